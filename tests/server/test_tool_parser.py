"""The streaming tool-call reader, without a model: text split at every possible point gives the same
content and calls as the whole answer; a call's head comes as soon as the model has named a known function,
its arguments piece by piece before the call is complete; each format the templates declare."""

from __future__ import annotations

import json

import pytest

from matelix.server.tool_formats import HERMES, LLAMA3_JSON, MISTRAL
from matelix.server.tool_parser import ToolCallParser

NAMES = {"get_weather", "get_time"}
ANSWERS = {
    HERMES: 'Ich schaue nach.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Bonn", "n": [1, {"a": "}"}]}}'
            '\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>',
    MISTRAL: 'Ich schaue nach.[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Bonn", "n": [1, {"a": "}"}]}}, '
             '{"name": "get_time", "arguments": {"zone": "CET"}}]',
    LLAMA3_JSON: '{"name": "get_weather", "parameters": {"city": "Bonn", "n": [1, {"a": "}"}]}}; '
                 '{"name": "get_time", "parameters": {"zone": "CET"}}',
}
ARGUMENTS = [{"city": "Bonn", "n": [1, {"a": "}"}]}, {"zone": "CET"}]


def read(fmt, pieces: list[str], limit=None):
    parser = ToolCallParser(fmt, NAMES, limit)
    out = [p for text in pieces for p in parser.push(text)] + parser.finish()
    content = "".join(p.content for p in out)
    heads = {p.index: p.call for p in out if p.call is not None}
    arguments: dict[int, str] = {}
    for p in out:
        if p.call is None and p.index is not None:
            arguments[p.index] = arguments.get(p.index, "") + p.arguments
    return content, heads, arguments, parser.calls


@pytest.mark.parametrize("fmt", list(ANSWERS), ids=lambda f: f.name)
def test_every_split_of_the_answer_reads_the_same_calls(fmt):
    text = ANSWERS[fmt]
    whole = read(fmt, [text])
    for cut in range(1, len(text)):
        content, heads, arguments, calls = read(fmt, [text[:cut], text[cut:]])
        assert content.strip() == whole[0].strip()
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", ARGUMENTS[0]),
                                                                     ("get_time", ARGUMENTS[1])]
        assert [heads[i].name for i in sorted(heads)] == ["get_weather", "get_time"]
        assert [arguments[i] for i in sorted(arguments)] == [c.arguments for c in calls]
    assert whole[0].strip() == ("" if fmt is LLAMA3_JSON else "Ich schaue nach.")


def test_the_head_and_the_arguments_stream_before_the_call_is_complete():
    parser = ToolCallParser(HERMES, NAMES)
    assert [p.content for p in parser.push("Moment. <tool_")] == ["Moment."]
    assert parser.push('call>\n{"name": "get_wea') == []
    head, first = parser.push('ther", "arguments": {"ci')
    assert head.index == 0 and head.call.name == "get_weather" and head.call.id.startswith("call_")
    assert (first.index, first.call, first.arguments) == (0, None, '{"ci')
    assert [p.arguments for p in parser.push('ty": "Bo')] == ['ty": "Bo']
    assert [p.arguments for p in parser.push('nn"}}\n</tool_call>')] == ['nn"}']
    assert parser.finish() == [] and parser.calls[0].arguments == '{"city": "Bonn"}'


def test_what_is_no_call_comes_out_unchanged():
    for text in ('<tool_call>{"name": "unknown", "arguments": {}}</tool_call> danach', "<tool_call>{kaputt",
                 "a <b> c <t", "<tool_call>kein JSON</tool_call>", "Kein Aufruf.\n"):
        for cut in range(len(text)):
            content, heads, _, calls = read(HERMES, [text[:cut], text[cut:]])
            assert (content, heads, calls) == (text, {}, [])
    for text in ("Das Wetter: {nicht JSON}", "  Hallo {", "<|python_tag|>kein Aufruf"):
        assert read(LLAMA3_JSON, [text])[0] == text
    assert read(LLAMA3_JSON, ['<|python_tag|>{"name": "get_time", "parameters": {"zone": "UTC"}}'])[3][0].name == "get_time"


def test_arguments_first_strings_and_a_cut_off_call():
    _, _, _, calls = read(HERMES, ['<tool_call>{"arguments": {"zone": "UTC"}, "name": "get_time"}</tool_call>'])
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_time", {"zone": "UTC"})]
    _, _, arguments, calls = read(HERMES, ['<tool_call>{"name": "get_time", "arguments": "{\\"zone\\": ', '\\"UTC\\"}"}'])
    assert json.loads(calls[0].arguments) == {"zone": "UTC"} and arguments[0] == calls[0].arguments
    _, _, arguments, calls = read(HERMES, ['<tool_call>{"name": "get_time", "arguments": {"zo'])
    assert calls[0].arguments == arguments[0] == '{"zo'  # max_tokens cut it off: what was generated


def test_without_parallel_calls_only_the_first_is_reported():
    content, heads, arguments, calls = read(HERMES, [ANSWERS[HERMES]], limit=1)
    assert [c.name for c in calls] == ["get_weather"] and list(heads) == [0] and list(arguments) == [0]
    assert content.strip() == "Ich schaue nach."
