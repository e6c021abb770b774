"""Real client libraries against the lab's `/v1` on the tiny (random) model, where only the protocol
matters: LangChain's `ChatOpenAI` (`bind_tools` + a tool round trip, a tool call streamed in pieces,
`with_structured_output` in its function_calling and json_schema methods), LiteLLM (streaming with tools) and instructor (TOOLS and
JSON_SCHEMA modes; JSON mode, which only asks for some JSON object, runs on the real model in
test_real_model_openai.py: a random model's object seldom ends within a few hundred tokens). A random model calls tools only when constrained, so these tests
force the call; behaviour is checked on the real model elsewhere."""

from __future__ import annotations

import json
import os
from typing import Literal

import pytest
from pydantic import BaseModel, Field

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM must not fetch its price list

DEMO = "models/tiny-demo"
QUESTION = "Wie ist das Wetter in Bonn?"


class Weather(BaseModel):
    """The weather question, as a structured object."""

    city: str = Field(max_length=10, description="The city")
    unit: Literal["celsius", "fahrenheit"]


class get_weather(BaseModel):  # noqa: N801 (a tool named as the function it stands for)
    """Weather in a city."""

    city: str = Field(max_length=10, description="The city")
    unit: Literal["celsius", "fahrenheit"]


@pytest.fixture
def chat_model(openai_server):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=DEMO, base_url=openai_server.url + "/v1", api_key=openai_server.settings.api_key,
                      temperature=0, max_tokens=120, max_retries=0, timeout=300)


def test_langchain_bind_tools_and_a_tool_round_trip(chat_model):
    from langchain_core.messages import HumanMessage, ToolMessage

    bound = chat_model.bind_tools([get_weather], tool_choice="get_weather")
    asked = HumanMessage(QUESTION)
    ai = bound.invoke([asked])
    [call] = ai.tool_calls
    assert call["name"] == "get_weather" and set(call["args"]) == {"city", "unit"}
    result = ToolMessage(f"12 Grad in {call['args']['city']}", tool_call_id=call["id"])
    answer = chat_model.bind_tools([get_weather]).invoke([asked, ai, result])
    assert answer.response_metadata["finish_reason"] in ("stop", "length", "tool_calls")


def test_langchain_streams_a_tool_call_in_pieces(chat_model):
    chunks = list(chat_model.bind_tools([get_weather], tool_choice="get_weather").stream(QUESTION))
    pieces = [c for chunk in chunks for c in chunk.tool_call_chunks if c.get("args")]
    assert len(pieces) > 2  # the arguments arrive while they are generated
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    [call] = whole.tool_calls
    assert call["name"] == "get_weather" and get_weather.model_validate(call["args"])


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_langchain_with_structured_output_returns_a_validated_object(chat_model, method):
    structured = chat_model.with_structured_output(Weather, method=method)
    weather = structured.invoke(QUESTION)
    assert isinstance(weather, Weather) and len(weather.city) <= 10


def test_litellm_streams_a_forced_tool_call(openai_server):
    import litellm

    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": Weather.model_json_schema()}}]
    chunks = litellm.completion(model=f"openai/{DEMO}", api_base=openai_server.url + "/v1",
                                api_key=openai_server.settings.api_key, messages=[{"role": "user", "content": QUESTION}],
                                tools=tools, tool_choice="required", stream=True, max_tokens=120, temperature=0)
    calls, finish = {}, None
    for chunk in chunks:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"name": "", "arguments": ""})
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    assert finish == "tool_calls" and calls[0]["name"] == "get_weather"
    Weather.model_validate(json.loads(calls[0]["arguments"]))


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA"])
def test_instructor_returns_a_validated_object(openai_client, mode):
    import instructor

    client = instructor.from_openai(openai_client, mode=getattr(instructor.Mode, mode))
    weather = client.chat.completions.create(model=DEMO, response_model=Weather, max_retries=0, max_tokens=120,
                                             temperature=0, messages=[{"role": "user", "content": QUESTION}])
    assert isinstance(weather, Weather) and len(weather.city) <= 10

