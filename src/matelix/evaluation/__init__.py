"""Benchmarks of lab models with lm-evaluation-harness: shipped local tasks, a run's held-out task, two
backends (in-process HF, the lab's own /v1/completions), results stored per model."""
