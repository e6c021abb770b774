"""`/v1/embeddings` and `/v1/responses` through the official `openai` SDK on the tiny model."""

from __future__ import annotations

import base64
import json

import jsonschema
import numpy as np
import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

DEMO = "models/tiny-demo"


def test_embeddings_are_unit_mean_pooled_hidden_states_for_text_lists_and_token_ids(openai_client, tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    texts = ["Der Wal", "Ein Baum hat viele Blätter"]
    r = openai_client.embeddings.create(model=DEMO, input=texts)
    assert [d.index for d in r.data] == [0, 1] and r.usage.prompt_tokens == r.usage.total_tokens > 0
    for text, item in zip(texts, r.data, strict=True):
        ids = tokenizer(text)["input_ids"]
        with torch.no_grad():
            states = model.model(torch.tensor([ids])).last_hidden_state[0]
        expected = torch.nn.functional.normalize(states.mean(0), dim=-1)
        assert np.allclose(item.embedding, expected.numpy(), atol=1e-4)
        assert abs(np.linalg.norm(item.embedding) - 1) < 1e-4
    by_ids = openai_client.embeddings.create(model=DEMO, input=tokenizer(texts[0])["input_ids"])
    assert np.allclose(by_ids.data[0].embedding, r.data[0].embedding, atol=1e-5)
    # The SDK asks for base64 by default when numpy is there; the raw wire value decodes to the same floats.
    raw = openai_client.embeddings.with_raw_response.create(model=DEMO, input=texts[0], encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(json.loads(raw.text)["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, r.data[0].embedding, atol=1e-6)


@pytest.mark.parametrize(("kw", "param"), [({"dimensions": 3}, "dimensions"), ({"input": [""]}, "input"),
                                           ({"input": [[999999]]}, "input")])
def test_embedding_requests_that_cannot_be_served_are_bad_requests(openai_client, kw, param):
    with pytest.raises(openai.BadRequestError) as exc:
        openai_client.embeddings.create(**{"model": DEMO, "input": "Hallo", **kw})
    assert exc.value.param == param


def test_responses_text_input_instructions_and_usage(openai_client):
    r = openai_client.responses.create(model=DEMO, input="Hallo", instructions="Sei kurz.", max_output_tokens=6,
                                       temperature=0)
    assert r.object == "response" and r.status in ("completed", "incomplete")
    assert r.output[0].type == "message" and r.output_text == r.output[0].content[0].text
    assert r.usage.output_tokens <= 6 and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    again = openai_client.chat.completions.create(
        model=DEMO, messages=[{"role": "system", "content": "Sei kurz."}, {"role": "user", "content": "Hallo"}],
        max_tokens=6, temperature=0)
    assert r.output_text == again.choices[0].message.content  # the same machinery as chat


def test_responses_stream_events_add_up_to_the_text(openai_client):
    kw = {"model": DEMO, "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hallo"}]}],
          "max_output_tokens": 8, "temperature": 0}
    whole = openai_client.responses.create(**kw)
    events = list(openai_client.responses.create(stream=True, **kw))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text
    assert events[-1].response.output_text == whole.output_text


def test_responses_function_tools_structured_output_and_statelessness(openai_client):
    tools = [{"type": "function", "name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"],
        "additionalProperties": False}}]
    r = openai_client.responses.create(model=DEMO, input="Wetter in Bonn?", tools=tools, tool_choice="required",
                                       max_output_tokens=80, temperature=0)
    [call] = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    follow = openai_client.responses.create(model=DEMO, max_output_tokens=4, temperature=0, tools=tools, input=[
        {"role": "user", "content": "Wetter in Bonn?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "12 Grad"}])
    assert follow.status in ("completed", "incomplete")
    events = list(openai_client.responses.create(model=DEMO, input="Wetter in Bonn?", tools=tools, stream=True,
                                                 tool_choice="required", max_output_tokens=80, temperature=0))
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    [done] = [e.item for e in events if e.type == "response.output_item.done"]
    assert len(deltas) > 2 and "".join(deltas) == done.arguments  # streamed as generated
    assert done.type == "function_call" and json.loads(done.arguments) == json.loads(call.arguments)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    shaped = openai_client.responses.create(model=DEMO, input="Ja?", max_output_tokens=40, temperature=0,
                                            text={"format": {"type": "json_schema", "name": "a", "schema": schema}})
    jsonschema.validate(json.loads(shaped.output_text), schema)
    with pytest.raises(openai.BadRequestError) as exc:
        openai_client.responses.create(model=DEMO, input="x", previous_response_id="resp_123")
    assert exc.value.param == "previous_response_id"
