"""Which tool-call format a chat template declares, and the grammars for it: forced calls (tool_choice
required / named) and the triggered grammar of `strict: true` functions under tool_choice auto, compiled
with xgrammar against the tiny model's tokenizer and checked with its matcher."""

from __future__ import annotations

import json

import jsonschema
import pytest
import xgrammar as xgr
from transformers import AutoTokenizer

from matelix.inference.grammar import compile_grammar
from matelix.server.tool_formats import HERMES, LLAMA3_JSON, MISTRAL, call_format, marker_is_special

PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": PARAMS, "strict": True}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def accepts(tokenizer, spec, text: str) -> bool:
    grammar = compile_grammar(tokenizer, len(tokenizer), {tokenizer.eos_token_id}, spec)
    return xgr.GrammarMatcher(grammar.compiled).accept_string(text)


class Template:
    def __init__(self, chat_template, special=()):
        self.chat_template, self.all_special_tokens = chat_template, list(special)


@pytest.mark.parametrize(("template", "expected"), [
    (None, HERMES),  # no template: the lab's own, tools described in the Hermes convention
    ("{% for m in messages %}{{ m.content }}{% endfor %}", HERMES),  # no tool support
    ("{% if tools %}{{ tools | tojson }}{% endif %}{{ '<tool_call>' }}", HERMES),  # Qwen / Hermes
    ("{% if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}{% endif %}[TOOL_CALLS]", MISTRAL),
    ("{% if tools %}{{ tools | tojson }}{% endif %}<|python_tag|>", LLAMA3_JSON),
    ({"default": "{{ tools }}", "tool_use": "{{ '[TOOL_CALLS]' }}"}, MISTRAL),
    ("{% if tools %}{{ tools | tojson }}{% endif %}", HERMES),  # tools, but no known marker
])
def test_the_template_declares_the_format(template, expected):
    assert call_format(Template(template)) is expected


def test_a_special_marker_keeps_special_tokens_in_the_text():
    assert marker_is_special(Template("", ["[TOOL_CALLS]"]), MISTRAL)
    assert not marker_is_special(Template("", ["<s>"]), MISTRAL) and not marker_is_special(Template(""), LLAMA3_JSON)


def test_the_call_schema_accepts_exactly_calls_of_the_tools():
    schema = HERMES.call_schema([WEATHER])
    jsonschema.validate({"name": "get_weather", "arguments": {"city": "Bonn"}}, schema)
    for bad in ({"name": "other", "arguments": {"city": "Bonn"}}, {"name": "get_weather", "arguments": {}},
                {"name": "get_weather"}):
        assert not jsonschema.Draft202012Validator(schema).is_valid(bad)
    assert set(LLAMA3_JSON.call_schema([WEATHER, TIME])["anyOf"][1]["properties"]) == {"name", "parameters"}


@pytest.mark.parametrize(("fmt", "call"), [
    (HERMES, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Bonn"}}\n</tool_call>'),
    (MISTRAL, '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Bonn"}}]'),
    (LLAMA3_JSON, '{"name": "get_weather", "parameters": {"city": "Bonn"}}'),
])
def test_a_forced_call_is_one_call_in_the_models_format(tokenizer, fmt, call):
    spec = fmt.forced([WEATHER, TIME])
    assert accepts(tokenizer, spec, call)
    assert not accepts(tokenizer, spec, call.replace('"Bonn"', "3"))  # arguments off the schema
    assert not accepts(tokenizer, spec, "Hallo " + call)  # nothing but the call
    assert accepts(tokenizer, fmt.forced([WEATHER, TIME], "get_time"), call.replace(
        '"get_weather"', '"get_time"').replace('{"city": "Bonn"}', "{}"))


def test_strict_false_lets_the_arguments_hold_what_the_schema_does_not_forbid(tokenizer):
    extra = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Bonn", "tag": 1}}\n</tool_call>'
    assert not accepts(tokenizer, HERMES.forced([WEATHER]), extra)
    loose = {"type": "function", "function": {**WEATHER["function"], "strict": False}}
    assert accepts(tokenizer, HERMES.forced([loose]), extra)


def test_strict_functions_under_auto_follow_their_schema_once_a_call_opens(tokenizer):
    assert HERMES.triggered([TIME]) is None and LLAMA3_JSON.triggered([WEATHER]) is None  # nothing strict / no marker
    for fmt in (HERMES, MISTRAL):
        spec = fmt.triggered([WEATHER, TIME])
        assert json.loads(spec.source)["triggers"] == [fmt.begin]
        call = f'{fmt.forced_begin}{{"name": "get_weather", "{fmt.arguments_key}": {{"city": "Bonn"}}}}{fmt.forced_end}'
        assert accepts(tokenizer, spec, "Ich schaue nach. " + call)
        assert accepts(tokenizer, spec, "Nur Text, kein Aufruf.")
        assert not accepts(tokenizer, spec, "Text " + call.replace('"Bonn"', "3"))
        loose = call.replace("get_weather", "get_time").replace('"Bonn"', '3')  # not strict: any arguments object
        assert accepts(tokenizer, spec, "Text " + loose)
        assert not accepts(tokenizer, spec, "Text " + call.replace("get_weather", "get_date"))  # no such function
