"""Serving options over HTTP: int8 weights chosen at load time (`/load_inference`, the `/v1` extra field) and
the prefix cache seen from `/inference_status` after a follow-up chat turn."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from matelix.server.app import create_app

MODEL = "models/tiny-demo"


@pytest.fixture
def lab(home, tiny_model_dir, make_settings):
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")
    with TestClient(create_app(make_settings(offline=True))) as client:
        yield client


def resident(lab) -> dict:
    (entry,) = lab.get("/inference_status").json()["loaded"]
    return entry


def test_load_with_int8_weights_and_switch_back_through_v1(lab):
    r = lab.post("/load_inference", json={"model_dir": MODEL, "device": "cpu", "quantization": "int8"})
    assert r.status_code == 200 and r.json()["quantization"] == "int8"
    int8_bytes = resident(lab)["memory_bytes"]
    r = lab.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "Hallo"}],
                                               "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200 and resident(lab)["quantization"] == "int8"  # no preference: as resident
    r = lab.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "Hallo"}],
                                               "max_tokens": 4, "temperature": 0, "quantization": "none"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
    assert resident(lab)["quantization"] == "none" and resident(lab)["memory_bytes"] > int8_bytes


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/load_inference", {"model_dir": MODEL, "quantization": "int4"}, "quantization"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                              "quantization": "int4"}, "quantization"),
])
def test_unknown_quantization_is_a_4xx_naming_the_field(lab, path, body, param):
    r = lab.post(path, json=body)
    assert 400 <= r.status_code < 500
    assert param in r.json()["error"]["message"] or r.json()["error"]["param"] == param


def test_a_follow_up_turn_is_answered_from_the_prefix_cache(lab):
    messages = [{"role": "system", "content": "Du bist MaTeLiX, eine hilfsbereite KI-Assistentin."},
                {"role": "user", "content": "Was ist ein neuronales Netz?"}]
    first = lab.post("/chat", json={"model_dir": MODEL, "messages": messages, "max_new_tokens": 8,
                                    "temperature": 0}).json()["response"]
    messages += [{"role": "assistant", "content": first}, {"role": "user", "content": "Und wozu?"}]
    r = lab.post("/chat", json={"model_dir": MODEL, "messages": messages, "max_new_tokens": 8, "temperature": 0})
    assert r.status_code == 200
    status = resident(lab)
    assert status["prefix_cache_hits"] == 1 and status["prefix_cache_reused_tokens"] > 10
