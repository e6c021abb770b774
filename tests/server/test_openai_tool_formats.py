"""Tool calling in the format the model's chat template declares, through the official `openai` SDK: copies
of the tiny model whose templates render tools the way Llama 3.1 (JSON calls with `parameters`) and
Mistral (`[TOOL_CALLS][...]`) templates do. The constrained call comes out in that format (seen in the
logprobs' tokens), is read back as `tool_calls` whole and streamed, and the history renders through the
template."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest
from tests.conftest import LiveServer, lab_home
from transformers import AutoTokenizer

from matelix.settings import Settings

PARAMS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}}, "required": ["city"],
          "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": PARAMS}}]
USER = [{"role": "user", "content": "Wie ist das Wetter in Bonn?"}]
TURNS = ("{%- for m in messages -%}"
         "{%- if m.role == 'assistant' and m.tool_calls -%}{{ '<|Assistentin|>\n' + CALLS + eos_token + '\n' }}"
         "{%- elif m.role == 'tool' -%}{{ '<|Benutzer|>\n' + RESULT + '\n' }}"
         "{%- else -%}{{ {'system': '<|System|>', 'user': '<|Benutzer|>', 'assistant': '<|Assistentin|>'}[m.role]"
         " + '\n' + m.content + '\n' }}{%- endif -%}{%- endfor -%}"
         "{%- if add_generation_prompt -%}{{ '<|Assistentin|>\n' }}{%- endif -%}")
TEMPLATES = {
    # Llama 3.1's JSON tool calling, cut down: the tools as JSON in the first turn, calls as
    # `<|python_tag|>{"name": ..., "parameters": ...}`, results as plain turns.
    "tiny-llama-tools": "{%- if tools -%}{{ '<|System|>\nGiven the following functions, respond with a JSON for a "
                        "function call in the format {\"name\": function name, \"parameters\": dictionary of "
                        "argument name and its value}.\n' }}{%- for t in tools -%}{{ t | tojson + '\n' }}"
                        "{%- endfor -%}{%- endif -%}" + TURNS.replace(
                            "CALLS", "'<|python_tag|>' + ({'name': m.tool_calls[0].function.name, 'parameters': "
                                     "m.tool_calls[0].function.arguments} | tojson)").replace("RESULT", "m.content"),
    # Mistral v3: `[AVAILABLE_TOOLS]...[/AVAILABLE_TOOLS]`, calls as `[TOOL_CALLS][...]`, `[TOOL_RESULTS]`.
    "tiny-mistral-tools": "{%- if tools -%}{{ '[AVAILABLE_TOOLS]' + (tools | tojson) + '[/AVAILABLE_TOOLS]\n' }}"
                          "{%- endif -%}" + TURNS.replace(
                              "CALLS", "'[TOOL_CALLS]' + (m.tool_calls | map(attribute='function') | list | tojson)"
                          ).replace("RESULT", "'[TOOL_RESULTS]' + m.content + '[/TOOL_RESULTS]'"),
}
BEGINS = {"tiny-llama-tools": '{"name": "get_weather", "parameters": {"city": "',
          "tiny-mistral-tools": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "'}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    home = lab_home(tmp_path_factory.mktemp("tool-formats-home"))
    for name, template in TEMPLATES.items():
        target = home / "models" / name
        shutil.copytree(tiny_model_dir, target)
        tokenizer = AutoTokenizer.from_pretrained(target)
        tokenizer.chat_template = template
        tokenizer.save_pretrained(target)
    with LiveServer(Settings(home=home, api_key="formats-key")) as live:
        yield live


@pytest.fixture
def client(server):
    import openai

    with openai.OpenAI(base_url=server.url + "/v1", api_key="formats-key", max_retries=0, timeout=300) as c:
        yield c


@pytest.mark.parametrize("model", list(TEMPLATES))
def test_a_forced_call_is_written_in_the_templates_format_and_read_back(client, model):
    kw = {"model": f"models/{model}", "messages": USER, "tools": TOOLS, "tool_choice": "required",
          "max_tokens": 160, "temperature": 0}
    whole = client.chat.completions.create(logprobs=True, **kw).choices[0]
    raw = "".join(t.token for t in whole.logprobs.content)
    assert raw.startswith(BEGINS[model]), raw
    assert whole.finish_reason == "tool_calls" and whole.message.content is None
    [call] = whole.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), PARAMS)

    chunks = list(client.chat.completions.create(stream=True, **kw))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "get_weather" and len(deltas) > 2  # the arguments in several pieces
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == json.loads(call.function.arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    history = [*USER, whole.message.model_dump(exclude_none=True, exclude={"logprobs"}),
               {"role": "tool", "tool_call_id": call.id, "content": "12 Grad"}]
    follow = client.chat.completions.create(model=f"models/{model}", messages=history, tools=TOOLS, max_tokens=4)
    plain = client.chat.completions.create(model=f"models/{model}", messages=history, tool_choice="none",
                                           tools=TOOLS, max_tokens=4)
    assert follow.usage.prompt_tokens > plain.usage.prompt_tokens  # the template rendered the tools
