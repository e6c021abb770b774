"""Behaviour of the OpenAI features on the real SmolLM2-135M-Instruct (ChatML template without tool support,
so tools go through the Hermes-style system prompt): constrained tool calls and JSON carry the facts of
the question, the unconstrained tool path stays well-formed, LangChain's json_mode parses, and instructor's
JSON mode gets a JSON object."""

from __future__ import annotations

import json
import os
import shutil

import openai
import pytest
from tests.conftest import LiveServer

from matelix.settings import Settings

pytestmark = [pytest.mark.real_model, pytest.mark.slow, pytest.mark.timeout(1800)]
MODEL = "models/smollm2"
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                   "required": ["city"], "additionalProperties": False}}}]


@pytest.fixture(scope="module")
def client(real_model_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("real-openai")
    for sub in ("datasets", "training_outputs", "models"):
        (home / sub).mkdir()
    shutil.copytree(real_model_dir, home / "models" / "smollm2", copy_function=os.link)  # hard links, no copy
    with LiveServer(Settings(home=home)) as server, \
            openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=900) as c:
        yield c


def test_tool_calls_and_json_carry_the_question_s_facts(client):
    ask = [{"role": "user", "content": "What is the weather like in Paris today?"}]
    forced = client.chat.completions.create(model=MODEL, messages=ask, tools=WEATHER, tool_choice="required",
                                            temperature=0, max_tokens=40)
    [call] = forced.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and "paris" in json.loads(call.function.arguments)["city"].lower()

    free = client.chat.completions.create(model=MODEL, messages=ask, tools=WEATHER, temperature=0, max_tokens=60)
    choice = free.choices[0]
    if choice.finish_reason == "tool_calls":  # a small model may or may not call by itself: both stay well-formed
        assert json.loads(choice.message.tool_calls[0].function.arguments)
    else:
        assert choice.message.tool_calls is None and choice.message.content

    schema = {"type": "object", "properties": {"country": {"type": "string", "maxLength": 30},
                                               "capital": {"type": "string", "maxLength": 30}},
              "required": ["country", "capital"], "additionalProperties": False}
    shaped = client.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=60,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}})
    assert json.loads(shaped.choices[0].message.content)["capital"].strip().lower() == "paris"


def test_langchain_json_mode_parses_on_the_real_model(client):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class Capital(BaseModel):
        country: str
        capital: str

    chat = ChatOpenAI(model=MODEL, base_url=str(client.base_url), api_key="x", temperature=0, max_tokens=80,
                      max_retries=0, timeout=900)
    answer = chat.with_structured_output(Capital, method="json_mode").invoke(
        "Give the country and the capital of France as a JSON object with keys country and capital.")
    assert isinstance(answer, Capital) and answer.capital



def test_instructor_json_mode_gets_a_json_object(client):
    # JSON mode asks the server only for a JSON object and puts the schema in the system message; filling
    # the schema in is up to the model, and SmolLM2-135M copies the schema's shape instead (a model with
    # required fields fails validation), so the response model here takes any object: the protocol is
    # what is checked — the answer is a JSON object and instructor parses it.
    import instructor
    from pydantic import BaseModel, ConfigDict

    class Note(BaseModel):
        model_config = ConfigDict(extra="allow")

    note, completion = instructor.from_openai(client, mode=instructor.Mode.JSON).chat.completions.create_with_completion(
        model=MODEL, response_model=Note, max_retries=0, temperature=0, max_tokens=120,
        messages=[{"role": "user", "content": "Give the country and the capital of France as a JSON object."}])
    sent = json.loads(completion.choices[0].message.content)
    assert isinstance(note, Note) and isinstance(sent, dict) and sent and note.model_extra == sent
