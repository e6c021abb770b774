"""GGUF import: architecture check, clear errors, and the real SmolLM2 conversion."""

from __future__ import annotations

import json

import pytest
from tests.server.routes.test_catalog_gguf import _write_gguf

from matelix.cli import main
from matelix.models.gguf_import import GGUFImportError, check_gguf, import_gguf


def test_unsupported_architecture_is_refused_by_name(tmp_path):
    path = tmp_path / "odd.gguf"
    _write_gguf(path, "notanarch")
    with pytest.raises(GGUFImportError, match="architecture 'notanarch' is not supported"):
        check_gguf(path)
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_gguf_is_refused(tmp_path, capsys):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"this is not a gguf file at all")
    assert main(["import-gguf", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "not a readable GGUF file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_existing_model_is_never_overwritten(tmp_path, real_model_dir):
    from matelix.demo.real_model import packaged_gguf

    out = tmp_path / "m"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(GGUFImportError, match="already exists"):
        import_gguf(packaged_gguf(), out)
    assert json.loads((out / "config.json").read_text()) == {}


@pytest.mark.real_model
def test_real_model_folder_is_complete_and_tied(real_model_dir):
    config = json.loads((real_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152
    assert config["tie_word_embeddings"] is True
    assert "quantization_config" not in config
    tok = json.loads((real_model_dir / "tokenizer_config.json").read_text())
    assert tok["eos_token"] == "<|im_end|>"  # the GGUF metadata's eos id 2, not <|im_start|>
    assert (real_model_dir / "chat_template.jinja").read_text().count("<|im_start|>") >= 2
    assert (real_model_dir / "model.safetensors").stat().st_size > 500_000_000


@pytest.mark.real_model
def test_real_model_answers_factual_questions(real_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(real_model_dir)
    model = AutoModelForCausalLM.from_pretrained(real_model_dir).eval()
    prompts = [[{"role": "user", "content": "What is the capital of France?"}],
               [{"role": "user", "content": "What color is the sky on a clear day?"}]]
    tokenizer.padding_side = "left"
    batch = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True, padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=24, do_sample=False)
    answers = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answers[0]
    assert "blue" in answers[1].lower()
