"""Structured output on `/v1` through the official `openai` SDK, on the tiny (random) model: whatever the
model would say, a constrained answer that ends by itself parses and validates against the schema."""

from __future__ import annotations

import asyncio
import json
import re

import jsonschema
import openai
import pytest

DEMO = "models/tiny-demo"
USER = [{"role": "user", "content": "Beschreibe einen Wal als JSON."}]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "kind": {"enum": ["fish", "mammal", "bird"]},
        "legs": {"type": "integer", "minimum": 0, "maximum": 8},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "home": {"type": "object", "properties": {"ocean": {"type": "boolean"}, "depth": {"type": "integer",
                 "minimum": 0, "maximum": 9999}}, "required": ["ocean", "depth"], "additionalProperties": False},
    },
    "required": ["name", "kind", "legs", "tags", "home"],
    "additionalProperties": False,
}


def test_json_schema_output_always_validates(openai_client):
    r = openai_client.with_options(timeout=900).chat.completions.create(  # a busy CPU may take minutes
        model=DEMO, messages=USER, n=4, seed=3, temperature=1.0, max_tokens=400,
        response_format={"type": "json_schema", "json_schema": {"name": "animal", "schema": SCHEMA, "strict": True}})
    for choice in r.choices:
        assert choice.finish_reason == "stop", choice.message.content
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)


def test_json_schema_streams_the_same_greedy_answer(openai_client):
    kw = {"model": DEMO, "messages": USER, "temperature": 0, "max_tokens": 400,
          "response_format": {"type": "json_schema", "json_schema": {"name": "animal", "schema": SCHEMA}}}
    whole = openai_client.chat.completions.create(**kw).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in openai_client.chat.completions.create(stream=True, **kw)
                       if c.choices)
    assert streamed == whole
    jsonschema.validate(json.loads(whole), SCHEMA)


def test_guided_choice_and_regex_on_completions(openai_client):
    choices = ["ja", "nein", "vielleicht"]
    r = openai_client.completions.create(model=DEMO, prompt="Ist der Wal ein Fisch?", n=4, seed=1, max_tokens=10,
                                         extra_body={"guided_choice": choices})
    assert all(c.text in choices and c.finish_reason == "stop" for c in r.choices)
    r = openai_client.completions.create(model=DEMO, prompt="Code:", n=4, seed=2, max_tokens=20,
                                         extra_body={"guided_regex": "[0-9]{3}-[a-z]{2}"})
    assert all(re.fullmatch("[0-9]{3}-[a-z]{2}", c.text) for c in r.choices), [c.text for c in r.choices]


def test_unconstrained_requests_in_the_same_batch_are_unchanged(async_openai_client):
    plain = {"model": DEMO, "messages": USER, "temperature": 0, "max_tokens": 24}

    async def run():
        alone = await async_openai_client.chat.completions.create(**plain)
        mixed = await asyncio.gather(
            async_openai_client.chat.completions.create(**plain),
            *(async_openai_client.chat.completions.create(
                **{**plain, "max_tokens": 200},
                response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}})
              for _ in range(3)))
        return alone, mixed

    alone, mixed = asyncio.run(run())
    assert mixed[0].choices[0].message.content == alone.choices[0].message.content
    for r in mixed[1:]:
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)


@pytest.mark.parametrize(("kw", "param"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
     "response_format"),
    ({"extra_body": {"guided_regex": "("}}, "guided_regex"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}, "strict": True}}]},
     "tools"),  # strict under auto: compiled as the call's constraint
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}],
      "tool_choice": "required"}, "tool_choice"),
    ({"extra_body": {"guided_regex": "a", "guided_choice": ["b"]}}, "body"),
])
def test_a_grammar_that_cannot_be_compiled_is_a_bad_request(openai_client, kw, param):
    with pytest.raises(openai.BadRequestError) as exc:
        openai_client.chat.completions.create(model=DEMO, messages=USER, max_tokens=5, **kw)
    assert exc.value.param == param


def test_strict_false_reads_the_schema_as_json_schema_does(tiny_model_dir):
    import xgrammar as xgr
    from transformers import AutoTokenizer

    from matelix.inference.grammar import compile_grammar
    from matelix.server.openai_schema import ResponseFormat

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    extra = '{"name": "Wal", "legs": 0}'  # a property the schema does not list (nor forbid)

    def accepts(strict):
        fmt = ResponseFormat.model_validate({"type": "json_schema", "json_schema": {
            "name": "a", "schema": schema, **({} if strict is None else {"strict": strict})}})
        grammar = compile_grammar(tokenizer, len(tokenizer), {tokenizer.eos_token_id}, fmt.grammar_spec())
        return xgr.GrammarMatcher(grammar.compiled).accept_string(extra)

    jsonschema.validate(json.loads(extra), schema)
    assert accepts(False) and not accepts(True) and not accepts(None)
