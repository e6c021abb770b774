"""The vLLM backend's forwarding, tested without a GPU: the upstream is a second, real lab server (an
OpenAI-compatible server, as `vllm serve` is), reached through MATELIX_VLLM_URL. The front server keeps its
own API key, limits, metrics and error shape."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.conftest import LiveServer, free_port, lab_home

from matelix.server.app import create_app
from matelix.settings import Settings

DEMO = "models/tiny-demo"
KEY = {"Authorization": "Bearer front-key"}
CHAT = {"model": DEMO, "messages": [{"role": "user", "content": "Hallo, wer bist du?"}], "max_tokens": 12,
        "temperature": 0}


@pytest.fixture(scope="module")
def servers(tmp_path_factory, tiny_model_dir):
    home = lab_home(tmp_path_factory.mktemp("vllm-forward-home"), tiny_model_dir)
    with LiveServer(Settings(home=home, offline=True)) as upstream, \
            LiveServer(Settings(home=home, offline=True, inference_backend="vllm", vllm_url=upstream.url,
                                api_key="front-key", max_n=2)) as front:
        yield upstream, front


def sse_events(text: str) -> list:
    return [json.loads(d) if d != "[DONE]" else d
            for d in re.findall(r"^data: (.*)$", text, re.M)]


def test_a_chat_completion_is_the_upstreams_answer_behind_the_fronts_key(servers):
    upstream, front = servers
    assert httpx.post(front.url + "/v1/chat/completions", json=CHAT, timeout=60).status_code == 401
    direct = httpx.post(upstream.url + "/v1/chat/completions", json=CHAT, timeout=120).json()
    forwarded = httpx.post(front.url + "/v1/chat/completions", json=CHAT, headers=KEY, timeout=120).json()
    assert forwarded["object"] == "chat.completion" and forwarded["model"] == DEMO
    assert forwarded["choices"][0]["message"]["content"] == direct["choices"][0]["message"]["content"]
    assert forwarded["usage"] == direct["usage"]


def test_a_stream_is_relayed_chunk_by_chunk_with_usage_only_when_asked(servers):
    upstream, front = servers
    whole = httpx.post(upstream.url + "/v1/chat/completions", json=CHAT, timeout=120).json()
    plain = httpx.post(front.url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers=KEY, timeout=120)
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/event-stream")
    events = sse_events(plain.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    with_usage = httpx.post(front.url + "/v1/chat/completions", headers=KEY, timeout=120,
                            json={**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    last = sse_events(with_usage.text)[-2]
    assert last["choices"] == [] and last["usage"] == whole["usage"]


def test_text_completions_are_forwarded(servers):
    upstream, front = servers
    body = {"model": DEMO, "prompt": "Der Wal", "max_tokens": 8, "temperature": 0}
    direct = httpx.post(upstream.url + "/v1/completions", json=body, timeout=120).json()
    forwarded = httpx.post(front.url + "/v1/completions", json=body, headers=KEY, timeout=120).json()
    assert forwarded["choices"][0]["text"] == direct["choices"][0]["text"]


def test_the_labs_chat_routes_answer_in_their_own_format(servers):
    upstream, front = servers
    body = {"model_dir": DEMO, "messages": [{"role": "user", "content": "Hallo"}], "max_new_tokens": 10,
            "temperature": 0}
    direct = httpx.post(upstream.url + "/chat", json=body, timeout=120).json()
    forwarded = httpx.post(front.url + "/chat", json=body, headers=KEY, timeout=120).json()
    assert forwarded == {**direct, "model": DEMO}
    text = httpx.post(front.url + "/chat_stream", json=body, headers=KEY, timeout=120).text
    assert text == direct["response"]
    sse = httpx.post(front.url + "/chat_stream", json=body, headers={**KEY, "Accept": "text/event-stream"},
                     timeout=120)
    events = sse_events(sse.text)
    assert "".join(e["delta"] for e in events if isinstance(e, dict) and "delta" in e) == direct["response"]
    assert events[-2] == {"model": DEMO, "finish_reason": direct["finish_reason"], "usage": direct["usage"]}
    assert events[-1] == "[DONE]"


def test_upstream_refusals_keep_their_status_in_the_labs_error_shape(servers):
    _, front = servers
    r = httpx.post(front.url + "/v1/chat/completions", json={**CHAT, "model": "models/no-such-model"}, headers=KEY,
                   timeout=60)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "model_not_found" and "no-such-model" in error["message"]


def test_the_fronts_own_limits_apply_before_forwarding(servers):
    _, front = servers
    r = httpx.post(front.url + "/v1/chat/completions", json={**CHAT, "n": 3}, headers=KEY, timeout=60)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "limit_exceeded" and r.json()["error"]["param"] == "n"


def test_forwarded_generations_are_counted_in_the_fronts_metrics(servers):
    _, front = servers
    httpx.post(front.url + "/v1/chat/completions", json=CHAT, headers=KEY, timeout=120).raise_for_status()
    metrics = httpx.get(front.url + "/metrics", headers=KEY, timeout=30).text
    found = re.search(r'^matelix_generated_tokens_total\{model="models/tiny-demo"\} (\S+)$', metrics, re.M)
    assert found and float(found.group(1)) > 0


def test_an_unreachable_upstream_is_a_502_in_the_labs_error_shape(tmp_path, tiny_model_dir):
    settings = Settings(home=lab_home(tmp_path, tiny_model_dir), inference_backend="vllm",
                        vllm_url=f"http://127.0.0.1:{free_port()}")
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_failed" and "cannot be reached" in r.json()["error"]["message"]


def test_vllm_backend_without_vllm_is_a_clear_409(tmp_path, tiny_model_dir):
    settings = Settings(home=lab_home(tmp_path, tiny_model_dir), inference_backend="vllm",
                        vllm_executable="no-such-vllm")
    with TestClient(create_app(settings)) as client:
        for route, body in (("/v1/chat/completions", CHAT),
                            ("/chat", {"messages": [{"role": "user", "content": "Hallo"}]})):
            r = client.post(route, json=body)
            assert r.status_code == 409, r.text
            assert r.json()["error"]["code"] == "vllm_unavailable"
            assert "not installed" in r.json()["error"]["message"]
