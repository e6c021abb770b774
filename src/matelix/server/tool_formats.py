"""How a model writes tool calls, read from its chat template, and the grammars that make it write them.

    fmt = call_format(tokenizer)         # HERMES, MISTRAL or LLAMA3_JSON
    fmt.forced(tools, name, strict)      # tool_choice required / named: exactly one call (GrammarSpec)
    fmt.triggered(tools)                 # auto with `strict: true` functions: free text, strict calls

Formats (the conventions vLLM's tool parsers of the same names read):

* **hermes** — `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, one block per call, text
  around the blocks. Hermes, Qwen 2.5/3, SmolLM3 templates; also what the lab describes in the system
  prompt for templates without tool support.
* **mistral** — `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`: a JSON list after the marker
  (Mistral / Mixtral v3 templates).
* **llama3_json** — the answer *is* the call: `{"name": ..., "parameters": {...}}`, several separated by
  `;`, optionally after `<|python_tag|>` (Llama 3.1 / 3.2 templates with JSON tool calling).

A template declares its format by the marker it renders for earlier calls; a template that renders tools
but no known marker gets hermes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from matelix.inference.grammar import GrammarSpec


@dataclass(frozen=True)
class CallFormat:
    name: str
    begin: str
    """Opens a block of calls; "" = calls only as a JSON object at the very start of the answer."""
    end: str
    """Closes a block ("" = the block ends with the answer or with text that is not a call)."""
    arguments_key: str = "arguments"
    """The key the model writes the arguments under (both "arguments" and "parameters" are read)."""
    list_open: str = ""
    """Opens the list of calls right after `begin` (Mistral's `[`)."""
    separator: str = ""
    """Between the calls of one block (Mistral's `,`, Llama's `;`); "" = one call per block."""
    prefix: str = ""
    """A token the model may put before the first call of a begin-less format (Llama's `<|python_tag|>`)."""

    @property
    def forced_begin(self) -> str:
        return f"{self.begin}\n" if self.begin and not self.list_open else self.begin + self.list_open

    @property
    def forced_end(self) -> str:
        if not self.begin:
            return ""
        return "]" if self.list_open else f"\n{self.end}"

    def call_schema(self, tools: list[dict], name: str | None = None) -> dict:
        """JSON schema of one call object `{"name", <arguments_key>}` for any of `tools` (or only `name`)."""
        options = []
        for tool in tools:
            function = tool["function"]
            if name is not None and function["name"] != name:
                continue
            options.append({"type": "object", "properties": {"name": {"enum": [function["name"]]},
                                                             self.arguments_key: parameters_of(function)},
                            "required": ["name", self.arguments_key], "additionalProperties": False})
        return options[0] if len(options) == 1 else {"anyOf": options}

    def forced(self, tools: list[dict], name: str | None = None) -> GrammarSpec:
        """`tool_choice` required / named: the answer is exactly one call block whose arguments follow the
        function's parameters (strictly unless every function it may call says `strict: false`)."""
        chosen = [t for t in tools if name is None or t["function"]["name"] == name]
        strict = not all(t["function"].get("strict") is False for t in chosen)
        source = {"begin": self.forced_begin, "schema": self.call_schema(chosen), "end": self.forced_end}
        return GrammarSpec("tool_call", json.dumps(source), "tool_choice", strict)

    def triggered(self, tools: list[dict]) -> GrammarSpec | None:
        """`tool_choice` auto: free text, but a call of a `strict: true` function, once the model opens it,
        follows the function's parameters (calls of the other functions take any arguments object). None
        when no function is strict, or the format has no marker to trigger on (llama3_json)."""
        if not self.begin or not any(t["function"].get("strict") is True for t in tools):
            return None
        tags = []
        for tool in tools:
            function = tool["function"]
            schema = parameters_of(function) if function.get("strict") is True else ANY_OBJECT
            tags.append({"begin": f'{self.forced_begin}{{"name": {json.dumps(function["name"])}, '
                                  f'"{self.arguments_key}": ', "schema": schema, "end": "}" + self.forced_end})
        return GrammarSpec("tool_tags", json.dumps({"triggers": [self.begin], "tags": tags}), "tools")


ANY_OBJECT = {"type": "object", "additionalProperties": True}


def parameters_of(function: dict) -> dict:
    return function.get("parameters") or {"type": "object", "properties": {}}


HERMES = CallFormat("hermes", "<tool_call>", "</tool_call>")
MISTRAL = CallFormat("mistral", "[TOOL_CALLS]", "]", list_open="[", separator=",")
LLAMA3_JSON = CallFormat("llama3_json", "", "", arguments_key="parameters", separator=";", prefix="<|python_tag|>")
FORMATS = (HERMES, MISTRAL, LLAMA3_JSON)


def template_text(tokenizer) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = " ".join(template.values())
    return template if isinstance(template, str) else ""


def uses_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template renders a `tools` list itself."""
    return "tools" in template_text(tokenizer)


def call_format(tokenizer) -> CallFormat:
    """The format the model's chat template declares (hermes for templates without tool support, where the
    lab describes the tools itself)."""
    if not uses_tools(tokenizer):
        return HERMES
    template = template_text(tokenizer)
    if MISTRAL.begin in template:
        return MISTRAL
    if HERMES.begin in template:
        return HERMES
    if LLAMA3_JSON.prefix in template or '"parameters": ' in template:
        return LLAMA3_JSON
    return HERMES


def marker_is_special(tokenizer, fmt: CallFormat) -> bool:
    """Whether the format's marker is a special token (Mistral's `[TOOL_CALLS]`): then the answer is decoded
    with special tokens kept, or the marker would vanish from the text."""
    return bool(fmt.begin) and fmt.begin in getattr(tokenizer, "all_special_tokens", ())
