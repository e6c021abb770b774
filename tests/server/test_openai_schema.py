"""The `/v1` wire-format models: normalising flexible request shapes, rejecting what cannot be honoured,
and emitting exactly the OpenAI chunk fields."""

import pytest
from pydantic import ValidationError

from matelix.inference.chat import InvalidMessages, normalize_messages
from matelix.server.openai_schema import (
    MAX_CHOICES,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    CompletionRequest,
)

USER = [{"role": "user", "content": "Hallo"}]


def chat(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", messages=kw.pop("messages", USER), **kw)


def error_fields(exc: pytest.ExceptionInfo) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in exc.value.errors()]


def test_text_parts_are_joined_and_developer_is_a_system_message():
    r = chat(messages=[{"role": "developer", "content": [{"type": "text", "text": "Sei "},
                                                         {"type": "text", "text": "kurz."}]},
                       {"role": "user", "content": None}])
    rendered = normalize_messages([m.as_dict() for m in r.messages])
    assert [(m["role"], m["content"]) for m in rendered] == [("system", "Sei kurz."), ("user", "")]


def test_non_text_part_names_the_message():
    r = chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
    with pytest.raises(InvalidMessages) as exc:
        normalize_messages([m.as_dict() for m in r.messages])
    assert exc.value.param == "messages[0].content" and "text part" in str(exc.value)


def test_stop_string_or_list_becomes_a_list_without_empty_strings():
    assert chat(stop="\n").stop == ["\n"]
    assert chat(stop=["a", "", "b"]).stop == ["a", "b"]
    assert chat(stop=[""]).stop is None
    assert len(chat(stop=[str(i) for i in range(64)]).stop) == 64  # how many is a setting, checked at admission
    with pytest.raises(ValidationError):
        chat(stop=["x" * 257])


def test_max_completion_tokens_wins_over_max_tokens():
    assert chat(max_tokens=50, max_completion_tokens=5).max_new_tokens == 5
    assert chat(max_tokens=50).max_new_tokens == 50
    assert chat().max_new_tokens is None


def test_explicit_nulls_mean_the_defaults():
    r = chat(temperature=None, top_p=None, n=None, presence_penalty=None, stream=None, stop=None, seed=None,
             max_tokens=None, top_k=None)
    assert (r.temperature, r.top_p, r.n, r.presence_penalty, r.stream, r.top_k) == (1.0, 1.0, 1, 0.0, False, 0)
    assert CompletionRequest(model="m", prompt="x", echo=None, stream=None).echo is False


def test_unknown_fields_are_ignored_and_harmless_known_ones_accepted():
    r = chat(user="u", store=True, metadata={"a": "b"}, response_format={"type": "text"}, logprobs=False,
             tools=[], whatever=1)
    assert not hasattr(r, "whatever")


@pytest.mark.parametrize(("kw", "field"), [
    ({"temperature": 2.5}, "temperature"), ({"n": 0}, "n"), ({"top_p": 0}, "top_p"),
    ({"stream_options": {"include_usage": True}}, "stream_options"), ({"top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"), ({"logit_bias": {"a": 1}}, "logit_bias"),
    ({"tools": [{"type": "function"}]}, "tools.0.function"), ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"logit_bias": {"1": 101}}, "logit_bias"), ({"messages": [{"role": "function", "content": "x"}]}, "messages.0.role"),
])
def test_values_that_cannot_be_honoured_fail_on_their_field(kw, field):
    with pytest.raises(ValidationError) as exc:
        chat(**kw)
    assert error_fields(exc) == [field]


def test_include_usage_needs_stream():
    assert chat(stream=True, stream_options={"include_usage": True}).include_usage
    assert not chat(stream=True).include_usage


@pytest.mark.parametrize(("prompt", "expected"), [
    ("Hallo", ["Hallo"]), (["a", "b"], ["a", "b"]), ([1, 2, 3], [[1, 2, 3]]), ([[1], [2, 3]], [[1], [2, 3]]),
])
def test_completion_prompt_shapes_become_a_list(prompt, expected):
    assert CompletionRequest(model="m", prompt=prompt).prompt == expected


@pytest.mark.parametrize("prompt", [[], ["a", 1], [[1], []], [[1], "a"], {"text": "a"}])
def test_malformed_prompts_are_rejected(prompt):
    with pytest.raises(ValidationError) as exc:
        CompletionRequest(model="m", prompt=prompt)
    assert error_fields(exc) == ["prompt"]


def test_prompts_times_n_is_bounded():
    with pytest.raises(ValidationError) as exc:
        CompletionRequest(model="m", prompt=["x"] * (MAX_CHOICES // 8 + 1), n=8)
    assert error_fields(exc) == ["prompt"]


def test_completion_defaults_and_unsupported_fields():
    r = CompletionRequest(model="m", prompt="x", max_tokens=None, best_of=1)
    assert r.max_new_tokens == 16
    assert CompletionRequest(model="m", prompt="x", logprobs=1, echo=True).sampling_params(1).prompt_logprobs == 1
    for kw in ({"logprobs": 21}, {"suffix": "!"}, {"best_of": 2}):
        with pytest.raises(ValidationError):
            CompletionRequest(model="m", prompt="x", **kw)


def test_chunk_delta_carries_only_its_fields():
    first = ChatCompletionChunk(id="c", created=1, model="m",
                                choices=[ChatChunkChoice(index=0, delta=ChatDelta(role="assistant", content=""))])
    last = ChatCompletionChunk(id="c", created=1, model="m",
                               choices=[ChatChunkChoice(index=0, delta=ChatDelta(), finish_reason="stop")])
    assert first.model_dump()["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert last.model_dump()["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
