"""The tiny demo model factory."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from matelix.data.template import ROLE_TOKENS
from matelix.demo.model import create_demo_model


def test_demo_model_loads_with_transformers(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    n_params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n_params < 10_000_000
    assert model.config.model_type == "llama"
    ids = tok("Hallo Welt", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 5


def test_role_tokens_are_single_special_tokens(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for token in ROLE_TOKENS.values():
        assert len(tok.encode(token, add_special_tokens=False)) == 1
        assert token in tok.all_special_tokens
    assert tok.pad_token == "<|pad|>" and tok.pad_token != tok.eos_token


def test_round_trip_is_lossless(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Grüße aus Köln! def f(x):\n    return x ** 2  # ✓ 日本"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_chat_template_is_saved(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|Benutzer|>\nHi\n<|Assistentin|>\n"


def test_factory_is_deterministic(tmp_path):
    a = create_demo_model(tmp_path / "a", seed=3)
    b = create_demo_model(tmp_path / "b", seed=3)
    ma, mb = AutoModelForCausalLM.from_pretrained(a), AutoModelForCausalLM.from_pretrained(b)
    for (na, pa), (_, pb) in zip(ma.named_parameters(), mb.named_parameters(), strict=True):
        assert torch.equal(pa, pb), na
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
