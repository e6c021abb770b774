"""Request limits of the generation routes (settings `max_*`): oversized requests are a 400 naming the field,
and a full generation queue answers 429 with `Retry-After` in the OpenAI error shape on /v1, /chat and
/chat_stream. Generation metrics are recorded for both adapters."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import openai
import pytest
from tests.conftest import LiveServer, lab_home

DEMO = "models/tiny-demo"
KEY = "limits-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
LONG = 1500  # the max_new_tokens limit of the test server


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory, tiny_model_dir):
    """One generation slot and no queue, small request limits."""
    from matelix.settings import Settings

    home = lab_home(tmp_path_factory.mktemp("limits-home"), tiny_model_dir)
    settings = Settings(home=home, api_key=KEY, max_concurrent_generations=1, max_queued_generations=0,
                        max_messages=3, max_message_chars=100, max_new_tokens=LONG, max_n=2)
    with LiveServer(settings) as server:
        yield server


def post(server, path, body, **kw):
    return httpx.post(server.url + path, json=body, headers=HEADERS, timeout=120, **kw)


def chat_body(**kw):
    return {"model": DEMO, "messages": [{"role": "user", "content": "Hallo"}], "max_tokens": 2, **kw}


def lab_body(**kw):
    return {"model_dir": DEMO, "messages": [{"role": "user", "content": "Hallo"}], "max_new_tokens": 2, **kw}


@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", chat_body(messages=[{"role": "user", "content": "x"}] * 4), "messages"),
    ("/v1/chat/completions", chat_body(messages=[{"role": "user", "content": "x" * 101}]), "messages[0].content"),
    ("/v1/chat/completions", chat_body(max_tokens=LONG + 1), "max_tokens"),
    ("/v1/chat/completions", chat_body(max_completion_tokens=LONG + 1), "max_tokens"),
    ("/v1/chat/completions", chat_body(n=3), "n"),
    ("/v1/completions", {"model": DEMO, "prompt": ["ok", "y" * 101]}, "prompt[1]"),
    ("/v1/completions", {"model": DEMO, "prompt": "ok", "max_tokens": LONG + 1}, "max_tokens"),
    ("/chat", lab_body(messages=[{"role": "user", "content": "x"}] * 4), "messages"),
    ("/chat", lab_body(system="s" * 101), "system"),
    ("/chat_stream", lab_body(messages=[{"role": "user", "content": [{"type": "text", "text": "z" * 101}]}]),
     "messages[0].content"),
    ("/chat", lab_body(max_new_tokens=LONG + 1), "max_new_tokens"),
])
def test_requests_over_a_limit_are_400_naming_the_field(busy_server, path, body, param):
    r = post(busy_server, path, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["code"] == "limit_exceeded"
    assert "limit" in error["message"] and "MATELIX_MAX_" in error["message"]


def in_flight(server) -> float:
    text = httpx.get(server.url + "/metrics", headers=HEADERS).text
    return float(re.search(r"^matelix_generations_in_flight (\S+)$", text, re.M).group(1))


def wait_idle(server) -> None:
    deadline = time.monotonic() + 60
    while in_flight(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_flight(server) == 0


@contextmanager
def paused_engine(server):
    """Pause the real engine of the demo model inside its next forward pass (the event loop runs on), so
    an admitted generation provably holds its slot until the block ends."""
    assert post(server, "/v1/chat/completions", chat_body(max_tokens=1)).status_code == 200  # loaded
    loaded = next(iter(server.server.config.app.state.registry._loaded.values()))
    release = threading.Event()
    forward = loaded.engine._forward

    def held_forward(*args, **kw):
        release.wait(60)
        return forward(*args, **kw)

    loaded.engine._forward = held_forward
    try:
        yield
    finally:
        release.set()
        del loaded.engine._forward


def test_a_full_queue_is_429_with_retry_after_on_every_generation_route(busy_server):
    wait_idle(busy_server)
    with ThreadPoolExecutor(1) as pool, paused_engine(busy_server):
        held = pool.submit(post, busy_server, "/v1/chat/completions", chat_body(max_tokens=2))
        deadline = time.monotonic() + 30
        while in_flight(busy_server) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert in_flight(busy_server) == 1  # the only slot is taken
        for path, body in (("/v1/chat/completions", chat_body()), ("/v1/completions", {"model": DEMO, "prompt": "a"}),
                           ("/chat", lab_body()), ("/chat_stream", lab_body())):
            r = post(busy_server, path, body)
            assert r.status_code == 429, (path, r.text)
            assert r.headers["Retry-After"] == "1"
            error = r.json()["error"]
            assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
            assert "busy" in error["message"] and "retry" in error["message"]
        # The official SDK sees a RateLimitError (and would retry after Retry-After with retries on).
        with openai.OpenAI(base_url=busy_server.url + "/v1", api_key=KEY, max_retries=0) as client:
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "x"}], max_tokens=1)
        assert in_flight(busy_server) == 1
    assert held.result().status_code == 200  # the admitted request was never disturbed
    wait_idle(busy_server)
    assert post(busy_server, "/v1/chat/completions", chat_body()).status_code == 200
    text = httpx.get(busy_server.url + "/metrics", headers=HEADERS).text
    assert re.search(r"^matelix_generation_requests_refused (\S+)$", text, re.M).group(1) == "5.0"


def test_n_choices_count_against_the_queue_as_a_whole(busy_server):
    wait_idle(busy_server)
    r = post(busy_server, "/v1/chat/completions", chat_body(n=2))
    assert r.status_code == 429, r.text  # two generations never fit into one slot; nothing was queued
    assert in_flight(busy_server) == 0


def test_generations_of_both_adapters_are_counted_in_metrics(busy_server):
    wait_idle(busy_server)
    assert post(busy_server, "/v1/chat/completions", chat_body(max_tokens=3, ignore_eos=True)).status_code == 200
    assert post(busy_server, "/chat", lab_body(max_new_tokens=3)).status_code == 200
    with httpx.stream("POST", busy_server.url + "/chat_stream", json=lab_body(max_new_tokens=3),
                      headers=HEADERS, timeout=120) as stream:
        stream.read()
    wait_idle(busy_server)
    text = httpx.get(busy_server.url + "/metrics", headers=HEADERS).text
    tokens = float(re.search(r'^matelix_generated_tokens_total\{model="models/tiny-demo"\} (\S+)$', text,
                             re.M).group(1))
    ttft = float(re.search(r'^matelix_time_to_first_token_seconds_count\{model="models/tiny-demo"\} (\S+)$', text,
                           re.M).group(1))
    assert tokens >= 3 + 1 + 1 and ttft >= 3
    assert 'matelix_loaded_models 1.0' in text
    assert 'matelix_engine_active_requests{model="models/tiny-demo"} 0.0' in text
    assert 'matelix_engine_queued_requests{model="models/tiny-demo"} 0.0' in text
