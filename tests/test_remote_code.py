"""trust_remote_code: off by default; a model folder that needs its own Python code is refused with a message
that says so, for inference and for training, and its code never runs."""

from __future__ import annotations

import json
import shutil

import pytest

from matelix.demo import demo_data_path
from matelix.remote_code import needs_remote_code
from matelix.settings import Settings

CUSTOM_CODE = '''
from pathlib import Path
Path(__file__).with_name("CODE_RAN").write_text("yes")  # proof that the folder's code was executed
from transformers import LlamaConfig, LlamaForCausalLM
class CustomConfig(LlamaConfig):
    model_type = "matelix-custom"
class CustomModel(LlamaForCausalLM):
    config_class = CustomConfig
'''


@pytest.fixture
def custom_model(home, tiny_model_dir):
    """The demo model, turned into a folder whose architecture exists only in its own code."""
    folder = home / "models" / "custom"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="matelix-custom", architectures=["CustomModel"],
                  auto_map={"AutoConfig": "custom_code.CustomConfig", "AutoModelForCausalLM": "custom_code.CustomModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom_code.py").write_text(CUSTOM_CODE)
    shutil.copy(demo_data_path("demo_chat.csv"), home / "datasets" / "chat.csv")
    return folder


def test_trust_remote_code_is_off_unless_set(tmp_path, monkeypatch):
    monkeypatch.delenv("MATELIX_TRUST_REMOTE_CODE", raising=False)
    assert Settings(home=tmp_path).trust_remote_code is False
    monkeypatch.setenv("MATELIX_TRUST_REMOTE_CODE", "true")
    assert Settings(home=tmp_path).trust_remote_code is True


def test_only_folders_that_need_their_own_code_are_flagged(custom_model, tiny_model_dir, tmp_path):
    assert needs_remote_code(custom_model)
    assert not needs_remote_code(tiny_model_dir)
    native = tmp_path / "native"  # a known architecture that merely carries an auto_map needs no code
    shutil.copytree(tiny_model_dir, native)
    config = json.loads((native / "config.json").read_text())
    (native / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "x.Y"}}))
    assert not needs_remote_code(native)


@pytest.mark.parametrize("path, body", [
    ("/load_inference", {"model_dir": "models/custom"}),
    ("/chat", {"model_dir": "models/custom", "messages": [{"role": "user", "content": "Hallo"}]}),
    ("/start", {"model_dir": "models/custom", "csv_path": "datasets/chat.csv", "max_steps": 1}),
])
def test_a_model_that_needs_its_own_code_is_refused_with_a_message_saying_so(client, custom_model, settings,
                                                                             path, body):
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "ships its own Python code" in error["message"] and "MATELIX_TRUST_REMOTE_CODE" in error["message"]
    assert error["param"] == "model_dir"
    assert not (custom_model / "CODE_RAN").exists()
    assert list(settings.outputs_dir.iterdir()) == []


def test_openai_route_refuses_it_too(client, custom_model):
    r = client.post("/v1/chat/completions", json={"model": "models/custom", "max_tokens": 1,
                                                  "messages": [{"role": "user", "content": "Hallo"}]})
    assert r.status_code == 400 and "trust_remote_code" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "model"
    assert not (custom_model / "CODE_RAN").exists()
