"""Inference: model registry, batching engine, sampling, detokenization, and the OpenAI wire format."""
