"""Edge values on every generation route (/chat, /chat_stream, /v1/chat/completions, /v1/completions) against
the tiny demo model: out-of-range seeds are a 4xx (never a 500), raised `MATELIX_MAX_*` settings are the only
limits, and a small fuzz of sampling values answers a 2xx or a 4xx in the common error shape, never a 5xx."""

from __future__ import annotations

import httpx
import pytest
from tests.conftest import LiveServer, lab_home

from matelix.inference.chat import render_chat
from matelix.inference.sampling import SEED_MAX, SEED_MIN

DEMO = "models/tiny-demo"
KEY = "inputs-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
MAX_NEW_TOKENS = 65536  # above the built-in default of 32768
MAX_MESSAGES = 5000  # above the built-in default of 1024
ROUTES = ("/chat", "/chat_stream", "/v1/chat/completions", "/v1/completions")
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    """Limits raised above the built-in defaults."""
    from matelix.settings import Settings

    home = lab_home(tmp_path_factory.mktemp("inputs-home"), tiny_model_dir)
    settings = Settings(home=home, api_key=KEY, max_new_tokens=MAX_NEW_TOKENS, max_messages=MAX_MESSAGES)
    with LiveServer(settings) as live:
        yield live


def body_for(route: str, **fields) -> dict:
    """A 2-token request for `route`; generic names (`max_tokens`) are mapped to the lab's (`max_new_tokens`)."""
    if route.startswith("/v1/"):
        base = {"model": DEMO, "max_tokens": 2}
        base |= {"prompt": "Hallo"} if route == "/v1/completions" else {"messages": [{"role": "user",
                                                                                    "content": "Hallo"}]}
        return base | fields
    if "max_tokens" in fields:
        fields["max_new_tokens"] = fields.pop("max_tokens")
    return {"model_dir": DEMO, "messages": [{"role": "user", "content": "Hallo"}], "max_new_tokens": 2} | fields


def post(server, route: str, body: dict) -> httpx.Response:
    return httpx.post(server.url + route, json=body, headers=HEADERS, timeout=120)


def assert_error_shape(r: httpx.Response) -> dict:
    error = r.json()["error"]
    assert set(error) == ERROR_KEYS and error["message"], r.text
    return error


def assert_answered(r: httpx.Response) -> None:
    """A 2xx whose body carries no generation error, or a 4xx in the common error shape."""
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert_error_shape(r)
    else:
        assert "[error:" not in r.text and '"error"' not in r.text, r.text


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("seed", [2**64, SEED_MAX + 1, SEED_MIN - 1, -(2**70)])
def test_out_of_range_seeds_are_rejected_naming_the_field(server, route, seed):
    r = post(server, route, body_for(route, seed=seed))
    assert r.status_code == (400 if route.startswith("/v1/") else 422), r.text
    assert assert_error_shape(r)["param"] == "seed"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("seed", [SEED_MIN, -1, 0, SEED_MAX])
def test_seeds_at_the_ends_of_the_range_generate(server, route, seed):
    extra = {"n": 3} if route.startswith("/v1/") else {}  # choice j samples with seed + j: wraps, never overflows
    r = post(server, route, body_for(route, seed=seed, temperature=1.0, **extra))
    assert r.status_code == 200, r.text
    assert_answered(r)


@pytest.mark.parametrize("route", ROUTES)
def test_max_tokens_above_the_built_in_default_follow_the_setting(server, route, tiny_model_dir):
    from transformers import AutoTokenizer

    # A prompt that leaves only a few tokens of the 2048-token context keeps the clipped generation short.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    words = 100
    while len(render_chat(tokenizer, [{"role": "user", "content": "Hallo " * (words + 50)}])) < 2040:
        words += 50
    fields = {"max_tokens": 40000, "temperature": 0}
    if route == "/v1/completions":
        fields["prompt"] = [tokenizer("Hallo " * words)["input_ids"][:2040]]
    else:
        fields["messages"] = [{"role": "user", "content": "Hallo " * words}]
    r = post(server, route, body_for(route, **fields))
    assert r.status_code == 200, r.text
    assert_answered(r)
    over = post(server, route, body_for(route, max_tokens=MAX_NEW_TOKENS + 1))
    assert over.status_code == 400 and assert_error_shape(over)["code"] == "limit_exceeded"


@pytest.mark.parametrize("route", ["/chat", "/v1/chat/completions"])
def test_message_counts_above_the_built_in_default_follow_the_setting(server, route):
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": "x"} for i in range(1100)]
    r = post(server, route, body_for(route, messages=messages))
    # Past the message limit; the tiny model's 2048-token context is what refuses this many turns.
    assert r.status_code == 400 and assert_error_shape(r)["code"] == "context_length_exceeded", r.text
    over = post(server, route, body_for(route, messages=[{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)))
    assert over.status_code == 400 and assert_error_shape(over)["code"] == "limit_exceeded"


EDGES = [
    ("seed", v) for v in (2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 1.5, "7x", None)
] + [
    ("top_k", v) for v in (-1, 0, 1, 10**9, 2**70, -5)
] + [
    ("top_p", v) for v in (0, 1e-9, 1, 1.5, -0.1, None)
] + [
    ("min_p", v) for v in (0, 1, 1.0001, -1, 1e-300)
] + [
    ("temperature", v) for v in (0, 1e-300, 1e-45, 1e-9, 2, 10, 100, -1, 1e308)
] + [
    ("repetition_penalty", v) for v in (1e-300, 1e-9, 0, 10, 11, -1)
] + [
    ("stop_token_ids", v) for v in ([], [-1], [0], [2**63], [2**70], list(range(64)), list(range(65)), ["a"])
] + [
    ("max_tokens", v) for v in (10**9, 2**70, 0, -1)
] + [
    ("n", v) for v in (0, -1, 1, 2, 17, 10**9)
]
OPENAI_ONLY = {"stop_token_ids", "n"}  # /v1 fields the lab routes do not have
CASES = [(route, field, value) for route in ROUTES for field, value in EDGES
         if route.startswith("/v1/") or field not in OPENAI_ONLY]


@pytest.mark.parametrize("route, field, value", CASES, ids=[f"{r}-{f}={v!r}"[:60] for r, f, v in CASES])
def test_edge_values_are_answered_never_a_server_error(server, route, field, value):
    extra = {} if field == "temperature" else {"temperature": 1.0}  # sample, so the warpers run
    assert_answered(post(server, route, body_for(route, **{field: value, **extra})))
