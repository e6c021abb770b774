"""Tool calling pieces without a model: the Hermes-style prompt for templates without tool support, and
reading calls out of whole answers (the streaming reader has its own tests in test_tool_parser.py)."""

from __future__ import annotations

import json

from matelix.server.tools import ToolCalls, described_messages

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


def test_calls_and_results_in_the_history_become_hermes_text_with_the_tools_in_the_system_message():
    history = [{"role": "system", "content": "Sei kurz."}, {"role": "user", "content": "Wetter in Bonn?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Bonn\"}"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "12 Grad"}]
    out = described_messages(history, [WEATHER])
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Sei kurz.") and "get_weather" in out[0]["content"]
    assert out[2] == {"role": "assistant",
                      "content": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Bonn"}}\n</tool_call>'}
    assert out[3] == {"role": "user", "content": "<tool_response>\n12 Grad\n</tool_response>"}
    assert described_messages(history[1:2], []) == history[1:2]  # no tools: nothing added


def test_tool_call_blocks_are_parsed_and_the_rest_is_content():
    text = 'Ich schaue nach.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Bonn"}}\n</tool_call>' \
           '<tool_call>{"name": "get_weather", "arguments": {"city": "Köln"}}</tool_call>'
    content, calls = ToolCalls({"get_weather"}).parse(text)
    assert content == "Ich schaue nach."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Bonn"}),
                                                                 ("get_weather", {"city": "Köln"})]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    assert ToolCalls({"get_weather"}, parallel=False).parse(text)[1][0].arguments == '{"city": "Bonn"}'
    for not_a_call in ('<tool_call>{"name": "unknown", "arguments": {}}</tool_call>', "<tool_call>{kaputt",
                       "Kein Aufruf."):
        assert ToolCalls({"get_weather"}).parse(not_a_call) == (not_a_call, [])
