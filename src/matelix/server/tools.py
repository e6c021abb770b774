"""Tool calling for `/v1/chat/completions` (and `/v1/responses`): tool definitions into the prompt, tool
calls out of the answer, `tool_choice` as constrained decoding.

* **Prompt**: the tools go to the model's chat template (`apply_chat_template(..., tools=...)`) when the
  template uses them; otherwise (`uses_tools` false) they are described in a system message in the
  Hermes convention that many small instruct models saw in training, and earlier tool calls / results in
  the history become `<tool_call>` / `<tool_response>` text. Written here because no library renders an
  OpenAI tool list for a template that has no tool support.
* **Answer**: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks (Hermes / Qwen) are tool
  calls; the text around them is the content. `ToolCallStream` does the same while streaming: text is
  passed on until a block may start, the blocks are sent as `tool_calls` deltas at the end.
* **tool_choice**: `none` leaves the tools out; `auto` lets the model choose; `required` and a named
  function constrain the output (xgrammar) to one call block whose arguments follow the function's
  parameter schema, so the call always parses.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from matelix.inference.grammar import GrammarSpec

OPEN, CLOSE = "<tool_call>", "</tool_call>"
BLOCK = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*(?:" + re.escape(CLOSE) + r"|$)", re.S)
SYSTEM_PROMPT = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> "
    "XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about "
    "what values to plug into functions. For each function call return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags as follows:\n<tool_call>\n{\"name\": <function-name>, "
    "\"arguments\": <args-json-object>}\n</tool_call>\nHere are the available tools: <tools>\n{tools}\n</tools>")


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it
    id: str = ""

    @classmethod
    def new(cls, name: str, arguments: dict) -> ToolCall:
        return cls(name, json.dumps(arguments, ensure_ascii=False), f"call_{uuid.uuid4().hex[:24]}")

    def wire(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def uses_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template renders a `tools` list itself."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = " ".join(template.values())
    return isinstance(template, str) and "tools" in template


def _arguments(value) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def template_messages(messages: list[dict]) -> list[dict]:
    """History for a template that knows tools: assistant `tool_calls` with their arguments as objects."""
    out = []
    for message in messages:
        if message.get("tool_calls"):
            calls = [{"type": "function", "function": {"name": c["function"]["name"],
                                                         "arguments": _arguments(c["function"].get("arguments"))}}
                     for c in message["tool_calls"]]
            message = {**message, "content": message.get("content") or "", "tool_calls": calls}
        out.append(message)
    return out


def prompt_messages(tokenizer, messages: list[dict], tools: list[dict] | None) -> tuple[list[dict], list[dict] | None]:
    """(messages, tools for the template) to render: the template's own tool support when it has one, else
    the Hermes-style description."""
    if uses_tools(tokenizer):
        return template_messages(messages), tools
    return described_messages(messages, tools or []), None


def described_messages(messages: list[dict], tools: list[dict]) -> list[dict]:
    """History for a template without tool support: the tools (if any) in the system message, calls and
    results as Hermes-style text."""
    described = SYSTEM_PROMPT.replace("{tools}", "\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
    out = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            blocks = [f"{OPEN}\n" + json.dumps({"name": c["function"]["name"],
                                                "arguments": _arguments(c["function"].get("arguments"))},
                                               ensure_ascii=False) + f"\n{CLOSE}" for c in message["tool_calls"]]
            content = "\n".join([content, *blocks] if content else blocks)
        elif role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        out.append({"role": role, "content": content})
    if not tools:
        return out
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{described}"}
    else:
        out.insert(0, {"role": "system", "content": described})
    return out


def parse_tool_calls(text: str, names: set[str]) -> tuple[str | None, list[ToolCall]]:
    """(content, calls) of an answer: every `<tool_call>` block naming a known function with object
    arguments is a call; anything else stays content (None when nothing is left)."""
    calls, kept = [], []
    last = 0
    for match in BLOCK.finditer(text):
        try:
            value = json.loads(match.group(1))
        except ValueError:
            continue
        if not isinstance(value, dict) or value.get("name") not in names:
            continue
        arguments = value.get("arguments", value.get("parameters", {}))
        if isinstance(arguments, str):
            arguments = _arguments(arguments)
        if not isinstance(arguments, dict):
            continue
        kept.append(text[last:match.start()])
        last = match.end()
        calls.append(ToolCall.new(value["name"], arguments))
    kept.append(text[last:])
    content = "".join(kept).strip() if calls else text
    return (content or None) if calls else content, calls


@dataclass(frozen=True)
class ToolCalls:
    """How one request's answers are read: the known function names, and whether several calls may stand."""

    names: set[str]
    parallel: bool = True

    def parse(self, text: str) -> tuple[str | None, list[ToolCall]]:
        content, calls = parse_tool_calls(text, self.names)
        return content, calls if self.parallel else calls[:1]

    def stream(self) -> ToolCallStream:
        return ToolCallStream(self)


class ToolCallStream:
    """Streamed text with tool-call blocks held back: `push(text)` returns the content that is safe to send
    now; `finish()` the rest of the content and the calls."""

    def __init__(self, calls: ToolCalls):
        self.calls = calls
        self.sent = ""
        self.held = ""

    def push(self, text: str) -> str:
        self.held += text
        start = self.held.find(OPEN)
        if start >= 0:
            return self._send(start)
        keep = next((n for n in range(min(len(OPEN) - 1, len(self.held)), 0, -1) if self.held.endswith(OPEN[:n])), 0)
        return self._send(len(self.held) - keep)

    def _send(self, upto: int) -> str:
        if self.sent and OPEN in self.sent + self.held[:upto]:  # already inside a block: hold everything
            return ""
        out, self.held = self.held[:upto], self.held[upto:]
        self.sent += out
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        content, calls = self.calls.parse(self.held)
        if not calls:
            return self.held, []
        return (content or ""), calls


def call_schema(tools: list[dict], name: str | None = None) -> dict:
    """JSON schema of one call object `{"name", "arguments"}` for any of `tools` (or only `name`)."""
    options = []
    for tool in tools:
        function = tool["function"]
        if name is not None and function["name"] != name:
            continue
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        options.append({"type": "object", "properties": {"name": {"enum": [function["name"]]},
                                                         "arguments": parameters},
                        "required": ["name", "arguments"], "additionalProperties": False})
    return options[0] if len(options) == 1 else {"anyOf": options}


def forced_call(tools: list[dict], name: str | None = None) -> GrammarSpec:
    """`tool_choice` required / named: the answer is exactly one call block (see `grammar.compile_grammar`)."""
    return GrammarSpec("tool_call", json.dumps(call_schema(tools, name)), "tool_choice")
