"""The lab's own inference routes: /load_inference, /unload_inference, /inference_status, /chat, /chat_stream."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from matelix.server.app import create_app

HELLO = [{"role": "user", "content": "Hallo"}]


def make_run(home, name: str, source):
    run = home / "training_outputs" / name
    shutil.copytree(source, run)
    (run / "status.json").write_text(json.dumps({"state": "completed"}), encoding="utf-8")
    return run


@pytest.fixture
def lab_home(home, tiny_model_dir, tiny_adapter_dir):
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")
    return home


@pytest.fixture
def lab(lab_home, make_settings):
    with TestClient(create_app(make_settings(offline=True))) as client:
        yield client


def chat(client, **body):
    body.setdefault("messages", HELLO)
    body.setdefault("max_new_tokens", 16)
    body.setdefault("temperature", 0)
    return client.post("/chat", json=body)


def test_chat_answers_with_the_demo_model(lab):
    r = chat(lab)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "models/tiny-demo"
    assert body["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 16


def test_system_message_is_prepended_as_a_system_turn(lab, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    r = chat(lab, system="Sei kurz.")
    rendered = tokenizer.apply_chat_template([{"role": "system", "content": "Sei kurz."}, *HELLO],
                                             add_generation_prompt=True, tokenize=False)
    assert r.json()["usage"]["prompt_tokens"] == len(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def test_chat_stream_plain_text_equals_the_whole_answer(lab):
    whole = chat(lab, max_new_tokens=24).json()["response"]
    r = lab.post("/chat_stream", json={"messages": HELLO, "max_new_tokens": 24, "temperature": 0})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == whole


def test_chat_stream_as_server_sent_events(lab):
    whole = chat(lab, max_new_tokens=24).json()
    r = lab.post("/chat_stream", headers={"Accept": "text/event-stream"},
                 json={"messages": HELLO, "max_new_tokens": 24, "temperature": 0})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in r.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    payloads = [json.loads(e) for e in events[:-1]]
    assert "".join(p.get("delta", "") for p in payloads) == whole["response"]
    assert payloads[-1]["finish_reason"] == whole["finish_reason"]
    assert payloads[-1]["usage"] == whole["usage"]


def test_stop_string_is_not_part_of_the_answer(lab):
    whole = chat(lab, max_new_tokens=24).json()["response"]
    stop = whole[3:6]
    r = chat(lab, max_new_tokens=24, stop=[stop])
    assert r.json()["response"] == whole[:whole.find(stop)]
    assert r.json()["finish_reason"] == "stop"
    streamed = lab.post("/chat_stream", json={"messages": HELLO, "max_new_tokens": 24, "temperature": 0,
                                              "stop": stop}).text
    assert streamed == whole[:whole.find(stop)]


def test_seeded_chat_is_reproducible(lab):
    a = chat(lab, temperature=1.0, seed=42).json()["response"]
    b = chat(lab, temperature=1.0, seed=42).json()["response"]
    assert a == b


def test_per_request_model_dir_serves_merged_and_adapter_runs(lab, lab_home, tiny_model_dir, tiny_adapter_dir):
    make_run(lab_home, "merged_2026-01-01_00-00-00", tiny_model_dir)
    make_run(lab_home, "lora_2026-01-01_00-00-00", tiny_adapter_dir)
    merged = chat(lab, model_dir="merged_2026-01-01_00-00-00")
    assert merged.status_code == 200 and merged.json()["model"] == "merged_2026-01-01_00-00-00"
    demo = chat(lab, model_dir="models/tiny-demo").json()
    assert merged.json()["response"] == demo["response"]  # same weights
    adapter = chat(lab, model_dir="lora_2026-01-01_00-00-00")
    assert adapter.status_code == 200 and adapter.json()["model"] == "lora_2026-01-01_00-00-00"
    assert adapter.json()["response"] != demo["response"]
    streamed = lab.post("/chat_stream", json={"messages": HELLO, "max_new_tokens": 16, "temperature": 0,
                                              "model_dir": "lora_2026-01-01_00-00-00"}).text
    assert streamed == adapter.json()["response"]


def test_load_status_and_unload(lab):
    r = lab.post("/load_inference", json={"model_dir": "models/tiny-demo", "device": "cpu"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "models/tiny-demo" and r.json()["device"] == "cpu"
    status = lab.get("/inference_status").json()
    assert [m["id"] for m in status["loaded"]] == ["models/tiny-demo"]
    model = status["loaded"][0]
    assert model["dtype"] == "float32" and model["memory_bytes"] > 0 and model["context_length"] == 2048
    assert status["active_requests"] == 0 and status["queued_requests"] == 0
    assert lab.post("/unload_inference").json()["unloaded"] == ["models/tiny-demo"]
    assert lab.get("/inference_status").json()["loaded"] == []
    assert lab.post("/unload_inference", json={}).json()["status"] == "nothing_loaded"


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"messages": []}, 422, "messages"),
    ({"messages": [{"role": "bot", "content": "x"}]}, 422, "role"),
    ({"messages": HELLO, "temperature": -0.5}, 422, "temperature"),
    ({"messages": HELLO, "max_new_tokens": 0}, 422, "max_new_tokens"),
    ({"messages": HELLO, "model_dir": "no-such-model"}, 404, "no-such-model"),
    ({"messages": HELLO, "model_dir": "../../etc"}, 400, "outside the allowed folders"),
    ({"messages": HELLO, "model_dir": "someone/remote-model"}, 400, "hub downloads are off"),
    ({"messages": [{"role": "user", "content": "Hallo " * 3000}]}, 400, "context"),
    ({"messages": HELLO, "unknown_field": 1}, 422, "unknown field"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}, 400, "text part"),
])
def test_bad_input_is_a_clear_4xx(lab, body, status, needle):
    r = lab.post("/chat", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]
    r = lab.post("/chat_stream", json=body)
    assert r.status_code == status


def test_load_refuses_bad_device_and_unknown_model(lab):
    assert lab.post("/load_inference", json={"device": "tpu"}).status_code == 400
    r = lab.post("/load_inference", json={"model_dir": "nothing-here"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_closing_a_stream_cancels_generation_and_frees_the_slot(lab_home, live_server):
    server = live_server
    probe = httpx.post(server.url + "/chat", json={"messages": HELLO, "max_new_tokens": 300, "temperature": 0},
                       timeout=120).json()
    assert probe["finish_reason"] == "length"  # greedy never stops by itself for this prompt
    body = {"messages": HELLO, "max_new_tokens": 2000, "temperature": 0}
    with httpx.stream("POST", server.url + "/chat_stream", json=body, timeout=60) as r:
        chunks = r.iter_text()
        assert next(chunks)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = httpx.get(server.url + "/inference_status", timeout=10).json()
        if status["active_requests"] == 0 and status["queued_requests"] == 0:
            break
        time.sleep(0.1)
    model = status["loaded"][0]
    assert model["active_requests"] == 0 and model["queued_requests"] == 0
    assert model["cancelled_requests"] == 1


def test_registry_readers_run_on_the_event_loop():
    """The registry's resident models change only on the event loop (load, evict, unload); the routes that
    list them run there too, never on a worker thread that could see the dict mid-change."""
    import inspect

    from matelix.server.routes import inference, openai

    for handler in (inference.inference_status, openai.list_models, openai.retrieve_model):
        assert inspect.iscoroutinefunction(handler), handler.__name__
