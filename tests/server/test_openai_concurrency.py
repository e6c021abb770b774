"""Stream lifecycle: many concurrent streams through the async `openai` client, cancellation when a client
goes away, and an error after the stream started."""

import asyncio
import json
import time

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from matelix.inference.engine import Engine

DEMO = "models/tiny-demo"
PARALLEL = 32
MAX_TOKENS = 8


def prompt_tokens(tokenizer, content: str) -> int:
    text = tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_32_parallel_streams_all_finish_with_correct_usage(async_openai_client, tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    contents = [f"Frage Nummer {i}: " + "warum? " * (i % 5) for i in range(PARALLEL)]

    async def one(content: str):
        stream = await async_openai_client.chat.completions.create(
            model=DEMO, messages=[{"role": "user", "content": content}], max_tokens=MAX_TOKENS,
            temperature=0.7, seed=len(content), stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": True})
        finishes, usage = [], None
        async for chunk in stream:
            finishes += [c.finish_reason for c in chunk.choices if c.finish_reason]
            usage = chunk.usage or usage
        return finishes, usage

    async def run_all():
        async with async_openai_client:
            return await asyncio.gather(*(one(c) for c in contents))

    results = asyncio.run(run_all())
    assert len(results) == PARALLEL
    for content, (finishes, usage) in zip(contents, results, strict=True):
        assert finishes == ["length"]
        assert usage.completion_tokens == MAX_TOKENS
        assert usage.prompt_tokens == prompt_tokens(tokenizer, content)
        assert usage.total_tokens == usage.prompt_tokens + MAX_TOKENS


def test_client_disconnect_mid_stream_cancels_the_generation(openai_server, monkeypatch):
    handles = []
    submit_many = Engine.submit_many

    def recording_submit_many(self, *args, **kw):
        submitted = submit_many(self, *args, **kw)
        handles.extend(submitted)
        return submitted

    monkeypatch.setattr(Engine, "submit_many", recording_submit_many)
    headers = {"Authorization": f"Bearer {openai_server.settings.api_key}"}
    body = {"model": DEMO, "prompt": "Der Wal", "max_tokens": 1500, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", openai_server.url + "/v1/completions", json=body, headers=headers,
                      timeout=60) as r:
        assert r.status_code == 200
        assert next(line for line in r.iter_lines() if line).startswith("data: ")
    [handle] = handles
    # The server notices the disconnect and the request leaves the batch at the next step; wait, bounded.
    deadline = time.monotonic() + 60
    while not handle.finished:
        assert time.monotonic() < deadline, "generation still running after the client left"
        time.sleep(0.1)
    assert handle.cancelled  # cancel() only takes effect on a request that had not finished yet
    status = httpx.get(openai_server.url + "/inference_status", headers=headers).json()
    assert status["active_requests"] == 0 and status["queued_requests"] == 0


def test_error_after_the_stream_started_is_an_error_event_then_done(openai_server, openai_client):
    headers = {"Authorization": f"Bearer {openai_server.settings.api_key}"}
    body = {"model": DEMO, "messages": [{"role": "user", "content": "Hallo"}], "max_tokens": 1500,
            "stream": True, "ignore_eos": True}
    with httpx.stream("POST", openai_server.url + "/v1/chat/completions", json=body, headers=headers,
                      timeout=60) as r:
        lines = (line for line in r.iter_lines() if line)
        assert json.loads(next(lines)[len("data: "):])["choices"][0]["delta"]["role"] == "assistant"
        unloaded = httpx.post(openai_server.url + "/unload_inference", json={"model_dir": DEMO}, headers=headers,
                              timeout=60)
        assert unloaded.json()["unloaded"] == [DEMO]
        rest = list(lines)
    assert rest[-1] == "data: [DONE]"
    error = json.loads(rest[-2][len("data: "):])["error"]
    assert set(error) == {"message", "type", "param", "code"} and "unloaded" in error["message"]
    # The SDK raises it as an APIError; a new request loads the model again.
    stream = openai_client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "Hallo"}],
                                                   max_tokens=1500, stream=True, extra_body={"ignore_eos": True})
    next(iter(stream))
    httpx.post(openai_server.url + "/unload_inference", json={"model_dir": DEMO}, headers=headers, timeout=60)
    with pytest.raises(openai.APIError, match="unloaded"):
        list(stream)
    assert openai_client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "Hallo"}],
                                                 max_tokens=2).choices[0].finish_reason in ("stop", "length")
