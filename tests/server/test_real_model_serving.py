"""The real model served through the lab: the official `openai` SDK gets the same greedy answer as bare
`generate` with the model's own chat template, and the right one."""

from __future__ import annotations

import os
import shutil

import openai
import pytest
from tests.conftest import LiveServer

from matelix.settings import Settings

pytestmark = [pytest.mark.real_model, pytest.mark.slow]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_openai_sdk_answer_equals_generate_with_the_models_template(real_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(real_model_dir)
    model = AutoModelForCausalLM.from_pretrained(real_model_dir).eval()
    batch = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    expected = tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    del model

    for sub in ("datasets", "training_outputs", "models"):
        (tmp_path / sub).mkdir()
    # hard links: the weights are not copied (a symlink out of home would be refused)
    shutil.copytree(real_model_dir, tmp_path / "models" / "smollm2", copy_function=os.link)
    with LiveServer(Settings(home=tmp_path, api_key="k")) as server, \
            openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0, timeout=300) as client:
        r = client.chat.completions.create(model="models/smollm2", messages=QUESTION, max_tokens=12,
                                           temperature=0)
    assert "Paris" in expected
    assert r.choices[0].message.content == expected
    assert r.usage.prompt_tokens == batch["input_ids"].shape[1]
