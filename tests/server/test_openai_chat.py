"""`/v1/chat/completions` through the official `openai` SDK on the tiny demo model (and raw SSE checks)."""

import json
import re

import httpx
import openai
import pytest
from transformers import AutoTokenizer

DEMO = "models/tiny-demo"
MESSAGES = [{"role": "system", "content": "Sei kurz."}, {"role": "user", "content": "Erzähl mir etwas über Wale."}]


def chat(client, **kw):
    kw.setdefault("model", DEMO)
    kw.setdefault("messages", MESSAGES)
    kw.setdefault("max_tokens", 12)
    return client.chat.completions.create(**kw)


def prompt_tokens(tiny_model_dir, messages) -> int:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def raw_events(server, body: dict) -> list[str]:
    """The `data:` payloads of a streamed response, exactly as sent."""
    headers = {"Authorization": f"Bearer {server.settings.api_key}"}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    return [line[len("data: "):] for line in lines]


def test_non_streaming_response_has_the_openai_shape(openai_client, tiny_model_dir):
    r = chat(openai_client, temperature=0)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == DEMO and r.created > 0
    [choice] = r.choices
    assert choice.index == 0 and choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == prompt_tokens(tiny_model_dir, MESSAGES)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert 1 <= r.usage.completion_tokens <= 12


def test_joined_stream_equals_non_streamed_text_under_greedy(openai_client):
    whole = chat(openai_client, temperature=0, max_tokens=20)
    stream = chat(openai_client, temperature=0, max_tokens=20, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [whole.choices[0].finish_reason]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert usage_chunks == [chunks[-1]] and chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage


def test_stream_wire_format_with_usage(openai_server):
    body = {"model": DEMO, "messages": MESSAGES, "max_tokens": 6, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    payloads = raw_events(openai_server, body)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    final = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(final) == 1 and final[0]["choices"][0]["delta"] == {}
    assert all(c["usage"] is None for c in chunks[:-1])  # present and null on every other chunk
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_stream_without_include_usage_sends_no_usage_field(openai_server):
    body = {"model": DEMO, "messages": MESSAGES, "max_tokens": 4, "stream": True}
    payloads = raw_events(openai_server, body)
    assert payloads[-1] == "[DONE]"
    assert all("usage" not in json.loads(p) for p in payloads[:-1])


def test_n_choices_stream_interleaved_each_with_one_role_and_one_finish(openai_client):
    stream = chat(openai_client, n=3, temperature=1.0, seed=7, max_tokens=8, stream=True)
    roles, finishes, texts = {}, {}, {0: "", 1: "", 2: ""}
    for chunk in stream:
        [choice] = chunk.choices
        if choice.delta.role:
            roles[choice.index] = roles.get(choice.index, 0) + 1
        if choice.finish_reason:
            finishes[choice.index] = finishes.get(choice.index, 0) + 1
        texts[choice.index] += choice.delta.content or ""
    assert roles == {0: 1, 1: 1, 2: 1} and finishes == {0: 1, 1: 1, 2: 1}
    whole = chat(openai_client, n=3, temperature=1.0, seed=7, max_tokens=8)
    assert [c.index for c in whole.choices] == [0, 1, 2]
    assert [c.message.content for c in whole.choices] == [texts[0], texts[1], texts[2]]


def test_seed_is_reproducible(openai_client):
    first = chat(openai_client, temperature=1.0, seed=1234, max_tokens=16)
    second = chat(openai_client, temperature=1.0, seed=1234, max_tokens=16)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage == second.usage


def greedy_answer_with_a_word(client) -> tuple[list[dict], str, str]:
    """A conversation whose greedy answer (random tiny model) has a word in its second half to stop at."""
    for question in ("Was ist ein Baum?", "Erzähl mir etwas über Wale.", "Hallo", "Wie spät ist es?"):
        messages = [{"role": "system", "content": "Sei kurz."}, {"role": "user", "content": question}]
        text = chat(client, messages=messages, temperature=0, max_tokens=24,
                    extra_body={"ignore_eos": True}).choices[0].message.content
        word = re.compile(r"[A-Za-z]{3}").search(text, len(text) // 2)
        if word:
            return messages, text, word.group()
    pytest.fail("no greedy answer of the demo model has a word to stop at")


def test_stop_string_is_excluded_also_when_streaming(openai_client):
    messages, text, stop = greedy_answer_with_a_word(openai_client)
    expected = text[:text.index(stop)]
    whole = chat(openai_client, messages=messages, temperature=0, max_tokens=24, stop=[stop, "\u2603"],
                 extra_body={"ignore_eos": True})
    assert whole.choices[0].message.content == expected and whole.choices[0].finish_reason == "stop"
    stream = chat(openai_client, messages=messages, temperature=0, max_tokens=24, stop=stop, stream=True,
                  extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_max_completion_tokens_wins_over_max_tokens(openai_client):
    r = chat(openai_client, max_tokens=20, max_completion_tokens=3, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"


def test_content_as_text_parts_equals_string_content(openai_client):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Erzähl mir "},
                                          {"type": "text", "text": "etwas über Wale."}]}]
    plain = [{"role": "user", "content": "Erzähl mir etwas über Wale."}]
    a = chat(openai_client, messages=parts, temperature=0)
    b = chat(openai_client, messages=plain, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content and a.usage == b.usage


def test_unknown_parameters_are_ignored(openai_client):
    r = chat(openai_client, temperature=0, max_tokens=2, user="u1", store=False, metadata={"k": "v"},
             extra_body={"no_such_option": 1, "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1})
    assert r.choices[0].finish_reason in ("stop", "length")


def test_temperature_out_of_range_is_a_bad_request(openai_client):
    with pytest.raises(openai.BadRequestError) as exc:
        chat(openai_client, temperature=5)
    assert exc.value.param == "temperature" and exc.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize(("kw", "param"), [
    ({"n": 0}, "n"),
    ({"stop": [f"s{i}" for i in range(65)]}, "stop"),  # MATELIX_MAX_STOP_STRINGS is 64
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"tools": [{"type": "function", "function": {"name": "kein name!"}}]}, "tools.0.function.name"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),  # without its schema
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content"),
])
def test_unsupported_or_invalid_values_are_bad_requests_naming_the_param(openai_client, kw, param):
    with pytest.raises(openai.BadRequestError) as exc:
        chat(openai_client, **kw)
    assert exc.value.param == param


def test_prompt_longer_than_the_context_is_a_bad_request(openai_client):
    with pytest.raises(openai.BadRequestError) as exc:
        chat(openai_client, messages=[{"role": "user", "content": "Wal " * 3000}])
    assert exc.value.code == "context_length_exceeded"


def test_unknown_model_is_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as exc:
        chat(openai_client, model="no-such-model")
    assert exc.value.code == "model_not_found" and exc.value.param == "model"
