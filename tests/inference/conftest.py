"""Fixtures for engine tests: the tiny demo model loaded once, and engines that are closed after each test."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    """(tokenizer, model) of the demo model, fp32, eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return tokenizer, model


@pytest.fixture
def make_engine(tiny_lm):
    """Build an Engine over the tiny model (stop token: EOS); every engine is closed at teardown."""
    from matelix.inference.detokenize import TextStream
    from matelix.inference.engine import Engine

    tokenizer, model = tiny_lm
    engines = []

    def _make(**kw):
        kw.setdefault("context_length", 2048)
        kw.setdefault("stop_token_ids", {tokenizer.eos_token_id})
        engine = Engine(model, text_stream=lambda params, ids: TextStream(tokenizer, params.stop, ids), **kw)
        engines.append(engine)
        return engine

    yield _make
    for engine in engines:
        engine.close()
