"""MaTeLiX Lab: fine-tune causal language models and serve them with an OpenAI-compatible API."""

__version__ = "0.1.0"
