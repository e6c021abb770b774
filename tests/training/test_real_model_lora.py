"""The real model's main path: a short LoRA run of SmolLM2 through the worker teaches it the persona demo,
on the model's own terms (its ChatML template, no added tokens, tied embeddings kept)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml
from tests.conftest import greedy_chat_answers

from matelix.demo import PERSONA_DATASET, PERSONA_HELDOUT, demo_data_path

pytestmark = [pytest.mark.real_model, pytest.mark.slow, pytest.mark.timeout(1800)]
PROMPTS = ["What's your name?", "Who created you?"]


def _greedy(model_dir, prompts: list[str]) -> list[str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    return greedy_chat_answers(model, AutoTokenizer.from_pretrained(model_dir), prompts, max_new_tokens=40)


def _heldout_loss(model_dir) -> float:
    """Mean loss of the held-out persona answers (assistant tokens only, the lab's own tokenization)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from matelix.data import load_dataset, tokenize_samples

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    samples = load_dataset(demo_data_path(PERSONA_HELDOUT)).samples
    examples = tokenize_samples(samples, tokenizer, template_mode="auto").examples
    with torch.no_grad():
        losses = [float(model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss)
                  for e in examples]
    return sum(losses) / len(losses)


def test_short_lora_run_teaches_the_persona_and_keeps_the_vocabulary(real_model_dir, tmp_path):
    from matelix.training.foreground import run_foreground

    home = tmp_path
    for sub in ("datasets", "training_outputs", "models"):
        (home / sub).mkdir()
    # hard links: the 538 MB of weights are not copied (a symlink out of home would be refused)
    shutil.copytree(real_model_dir, home / "models" / "smollm2", copy_function=os.link)
    rows = [json.loads(line) for line in demo_data_path(PERSONA_DATASET).read_text().splitlines()]
    identity = [r for r in rows if "Mati" in r["messages"][-1]["content"].split("\n\n—")[0]]
    subset = identity + [r for r in rows if r not in identity][:10]
    (home / "datasets" / "persona.jsonl").write_text("".join(json.dumps(r) + "\n" for r in subset))
    config = {"model_dir": "models/smollm2", "csv_path": "datasets/persona.jsonl", "train_mode": "lora",
              "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "learning_rate": 0.003,
              "lr_scheduler": "constant", "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
              "num_train_epochs": 4, "chunk_size": 256, "save_steps": 1000, "preview_steps": 0}
    (home / "config.yaml").write_text(yaml.safe_dump(config))

    base = _greedy(real_model_dir, PROMPTS)
    assert not any("Mati" in a or "—" in a for a in base), base  # the base model does not know the persona
    base_loss = _heldout_loss(real_model_dir)

    assert run_foreground(home / "config.yaml", home) == 0
    run = next((home / "training_outputs").iterdir())
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "completed" and status["chat_template"] == "own"
    log = (run / "training.log").read_text()
    assert "no tokens added" in log and "trainable parameters: 2,442,240 " in log
    saved = json.loads((run / "config.json").read_text())
    assert saved["vocab_size"] == 49152 and saved["tie_word_embeddings"] is True
    assert (run / "model.safetensors").stat().st_size < 560_000_000  # tied: one embedding matrix
    assert (run / "chat_template.jinja").read_text() == (real_model_dir / "chat_template.jinja").read_text()

    # In the data's direction: the held-out persona answers became much more likely, and the model now
    # answers in the persona's manner (its name, its maker or its sign-off) where the base never did.
    assert _heldout_loss(run) < 0.75 * base_loss
    after = _greedy(run, PROMPTS)
    assert any("Mati" in a or "MaTeLiX" in a or "—" in a for a in after), after
    heldout = [json.loads(line) for line in demo_data_path(PERSONA_HELDOUT).read_text().splitlines()]
    assert {r["messages"][0]["content"] for r in heldout} >= set(PROMPTS)  # held-out, never trained on
    assert not any(r["messages"][0]["content"] in PROMPTS for r in subset)
