"""Tool calling on `/v1/chat/completions` through the official `openai` SDK, on the tiny (random) model:
the protocol — tools in the prompt, tool_choice required/named as constrained decoding (the call always
parses against the parameters' schema), tool results in the history, streamed `tool_calls` deltas."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

DEMO = "models/tiny-demo"
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                                           "unit": {"enum": ["celsius", "fahrenheit"]}},
          "required": ["city", "unit"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": PARAMS}},
         {"type": "function", "function": {"name": "get_time", "parameters": {
             "type": "object", "properties": {"zone": {"enum": ["CET", "UTC"]}}, "required": ["zone"]}}}]
USER = [{"role": "user", "content": "Wie ist das Wetter in Bonn?"}]


def ask(client, **kw):
    kw.setdefault("model", DEMO)
    kw.setdefault("messages", USER)
    kw.setdefault("tools", TOOLS)
    kw.setdefault("max_tokens", 120)
    return client.chat.completions.create(**kw)


def test_required_tool_choice_always_returns_a_call_that_fits_its_schema(openai_client):
    r = ask(openai_client, tool_choice="required", n=2, seed=5, temperature=1.0)
    for choice in r.choices:
        assert choice.finish_reason == "tool_calls", choice.message
        [call] = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_")
        tool = next(t for t in TOOLS if t["function"]["name"] == call.function.name)
        jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])


def test_named_tool_choice_calls_that_function_also_when_streaming(openai_client):
    kw = {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "temperature": 0}
    whole = ask(openai_client, **kw).choices[0]
    assert whole.message.tool_calls[0].function.name == "get_weather"
    chunks = list(ask(openai_client, stream=True, **kw))
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].tool_calls[0].function.name == "get_weather" and deltas[0].tool_calls[0].id.startswith("call_")
    arguments = "".join(d.tool_calls[0].function.arguments or "" for d in deltas)
    assert json.loads(arguments) == json.loads(whole.message.tool_calls[0].function.arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    jsonschema.validate(json.loads(arguments), PARAMS)


def test_a_tool_round_trip_and_tool_choice_none(openai_client):
    first = ask(openai_client, tool_choice="required", temperature=0).choices[0].message
    history = [*USER, first.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "12 Grad, bewölkt"}]
    r = ask(openai_client, messages=history, max_tokens=8)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    none = ask(openai_client, messages=history, tool_choice="none", max_tokens=8)
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason in ("stop", "length")
    assert none.usage.prompt_tokens < r.usage.prompt_tokens  # no tool descriptions in the prompt


class Weather(BaseModel):
    """Weather in a city."""

    city: str = Field(max_length=10)
    unit: str = Field(pattern="^(celsius|fahrenheit)$")


def test_the_sdk_stream_helper_gets_the_arguments_while_they_are_generated(openai_client):
    tool = openai.pydantic_function_tool(Weather)  # strict: true, parsed back into a Weather
    with openai_client.chat.completions.stream(model=DEMO, messages=USER, tools=[tool], max_tokens=120,
                                               tool_choice={"type": "function", "function": {"name": "Weather"}},
                                               temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    types = [e.type for e in events]
    deltas = [e for e in events if e.type == "tool_calls.function.arguments.delta"]
    [done] = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert len(deltas) > 2 and types.index(deltas[-1].type) < types.index(done.type)  # piece by piece, then done
    assert "".join(d.arguments_delta for d in deltas) == done.arguments and done.name == "Weather"
    assert isinstance(done.parsed_arguments, Weather)
    [call] = final.choices[0].message.tool_calls
    assert call.function.parsed_arguments == done.parsed_arguments and final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("kw", [
    {"tool_choice": {"type": "function", "function": {"name": "missing"}}},
    {"tools": [TOOLS[0], TOOLS[0]]},
    {"tools": [], "tool_choice": "required"},
    {"functions": [{"name": "f"}]},
])
def test_inconsistent_tool_requests_are_bad_requests(openai_client, kw):
    with pytest.raises(openai.BadRequestError):
        ask(openai_client, **kw)
