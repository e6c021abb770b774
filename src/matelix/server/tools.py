"""Tool calling for `/v1/chat/completions` (and `/v1/responses`): tool definitions into the prompt, tool
calls out of the answer, `tool_choice` as constrained decoding.

* **Prompt**: the tools go to the model's chat template (`apply_chat_template(..., tools=...)`) when the
  template uses them; otherwise (`uses_tools` false) they are described in a system message in the
  Hermes convention that many small instruct models saw in training, and earlier tool calls / results in
  the history become `<tool_call>` / `<tool_response>` text. Written here because no library renders an
  OpenAI tool list for a template that has no tool support.
* **Answer**: read in the format the template declares (`tool_formats`: hermes `<tool_call>` blocks,
  mistral `[TOOL_CALLS][...]`, llama3_json), whole or while streaming (`tool_parser`): text around the
  calls is the content, each call's arguments stream as they are generated.
* **tool_choice**: `none` leaves the tools out; `auto` lets the model choose (calls of `strict: true`
  functions follow their schema once opened); `required` and a named function constrain the output
  (xgrammar) to one call block whose arguments follow the function's parameter schema, so it always parses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from matelix.server.tool_formats import HERMES, CallFormat, uses_tools
from matelix.server.tool_parser import Piece, ToolCall, ToolCallParser

OPEN, CLOSE = HERMES.begin, HERMES.end
SYSTEM_PROMPT = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> "
    "XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about "
    "what values to plug into functions. For each function call return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags as follows:\n<tool_call>\n{\"name\": <function-name>, "
    "\"arguments\": <args-json-object>}\n</tool_call>\nHere are the available tools: <tools>\n{tools}\n</tools>")


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


@dataclass(frozen=True)
class ToolCalls:
    """How one request's answers are read: the known function names, whether several calls may stand, and
    the format the model writes them in."""

    names: set[str]
    parallel: bool = True
    format: CallFormat = field(default=HERMES)

    def stream(self) -> ToolCallParser:
        return ToolCallParser(self.format, self.names, None if self.parallel else 1)

    def parse(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """(content, calls) of a whole answer, read exactly as a stream of it is: the text around the calls
        (None when nothing is left), and the calls."""
        parser = self.stream()
        pieces: list[Piece] = [*parser.push(text), *parser.finish()]
        content = "".join(p.content for p in pieces)
        if not parser.calls:
            return content, []
        return content.strip() or None, parser.calls
