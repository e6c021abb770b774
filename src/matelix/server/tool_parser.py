"""Tool calls read out of an answer as it is generated, in the model's `CallFormat`.

    parser = ToolCallParser(fmt, names={"get_weather"}, limit=None)
    for text in streamed_texts:
        for piece in parser.push(text): ...     # Piece(content=...) | head (index, call) | Piece(arguments=...)
    for piece in parser.finish(): ...
    parser.calls                                # the calls, arguments complete

Text outside call blocks is passed on as soon as it cannot be the start of a marker (whitespace waits for
the next word, so the whitespace between calls is not sent as content). A call is announced (its head: id
and name) as soon as the model has written `{"name": "<known function>", "arguments": ` and its arguments
are passed on piece by piece as the model writes them, as OpenAI streams them; the concatenated pieces are
the arguments' JSON exactly as generated. A block that turns out not to be a call (unknown name, no JSON
object) is content, marker included, so an answer without calls comes out unchanged. A call whose
arguments the model never finishes (cut off by `max_tokens`) keeps what was generated.

Hand-written (a small state machine over `json.JSONDecoder.raw_decode`): the parsers of vLLM and SGLang
are tied to their servers, and none streams the arguments of these formats as raw text.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from matelix.server.tool_formats import CallFormat

# A call's head: `{"name": "<name>", "arguments": ` up to the first character of the arguments value.
HEADER = re.compile(r'\{\s*"name"\s*:\s*"([^"\\]*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*(?=\S)')
DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it
    id: str = ""

    @staticmethod
    def new_id() -> str:
        return f"call_{uuid.uuid4().hex[:24]}"

    def wire(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Piece:
    """One streamed piece: content text, the head of call `index` (`call` with id and name, no arguments
    yet), or a fragment of call `index`'s arguments."""

    content: str = ""
    index: int | None = None
    call: ToolCall | None = None
    arguments: str = ""


def _decode(text: str, start: int) -> tuple[object, int] | None:
    """The JSON value starting at `start` and where it ends, or None while it is incomplete (or broken)."""
    try:
        return DECODER.raw_decode(text, start)
    except ValueError:
        return None


class ToolCallParser:
    """See the module docstring. `limit` caps how many calls are reported (1 without parallel tool calls);
    calls beyond it are read and dropped."""

    def __init__(self, fmt: CallFormat, names: set[str], limit: int | None = None):
        self.fmt, self.names, self.limit = fmt, names, limit
        self.buf, self.pos = "", 0
        self.state = "text" if fmt.begin else "start"
        self.block = 0  # where the current block starts (its marker): content again if it is no call
        self.block_calls = 0
        self.obj = self.args = self.sent = 0  # the current call object, its arguments, what is sent of them
        self.current: ToolCall | None = None
        self.parts: list[str] = []
        self.calls: list[ToolCall] = []
        self.seen = 0  # calls read, reported or not
        self.space = ""  # whitespace waiting for the next content
        self.out: list[Piece] = []

    # ---- output ----------------------------------------------------------------------------------------

    def _content(self, text: str) -> None:
        text = self.space + text
        body = text.rstrip()
        self.space = text[len(body):]
        if body:
            self.out.append(Piece(content=body))

    def _reported(self) -> bool:
        return self.limit is None or self.seen < self.limit

    def _head(self, name: str) -> None:
        self.current, self.parts, self.space = ToolCall(name, "", ToolCall.new_id()), [], ""
        if self._reported():
            self.out.append(Piece(index=len(self.calls), call=self.current))

    def _arguments(self, text: str) -> None:
        if text:
            self.parts.append(text)
            if self._reported():
                self.out.append(Piece(index=len(self.calls), arguments=text))

    def _close_call(self) -> None:
        if self._reported():
            self.calls.append(ToolCall(self.current.name, "".join(self.parts), self.current.id))
        self.seen += 1
        self.current = None
        self.block_calls += 1

    def _reject(self) -> None:
        """The block is no call: its marker is content, reading goes on after it."""
        if not self.fmt.begin:
            self.state, self.pos = "plain", self.block
            return
        self._content(self.buf[self.block:self.block + len(self.fmt.begin)])
        self.pos, self.state = self.block + len(self.fmt.begin), "text"

    # ---- reading ---------------------------------------------------------------------------------------

    def push(self, text: str) -> list[Piece]:
        self.buf += text
        while self._step():
            pass
        out, self.out = self.out, []
        return out

    def _skip_space(self) -> None:
        while self.pos < len(self.buf) and self.buf[self.pos].isspace():
            self.pos += 1

    def _step(self) -> bool:  # noqa: C901 (one branch per state reads best as one function)
        """Read as far as the text allows; True when the state changed (call again)."""
        buf, fmt = self.buf, self.fmt
        if self.state == "plain":
            self._content(buf[self.pos:])
            self.pos = len(buf)
            return False
        if self.state == "start":  # begin-less format: calls only at the very start of the answer
            rest = buf[self.pos:]
            stripped = rest.lstrip()
            if not stripped or (fmt.prefix.startswith(stripped) and stripped != fmt.prefix):
                return False  # nothing yet, or what may still become the prefix
            self.block, lead = self.pos, len(rest) - len(stripped)
            if fmt.prefix and stripped.startswith(fmt.prefix):
                self.pos, self.state = self.pos + lead + len(fmt.prefix), "block"
            elif stripped.startswith("{"):
                self.pos, self.state = self.pos + lead, "block"
            else:
                self.state = "plain"
            return True
        if self.state == "text":
            found = buf.find(fmt.begin, self.pos)
            if found >= 0:
                self._content(buf[self.pos:found])
                self.block, self.block_calls = found, 0
                self.pos, self.state = found + len(fmt.begin), "list" if fmt.list_open else "block"
                return True
            keep = next((n for n in range(min(len(fmt.begin) - 1, len(buf) - self.pos), 0, -1)
                         if buf.endswith(fmt.begin[:n])), 0)
            self._content(buf[self.pos:len(buf) - keep])
            self.pos = len(buf) - keep
            return False
        if self.state == "list":
            self._skip_space()
            if self.pos == len(buf):
                return False
            if buf.startswith(fmt.list_open, self.pos):
                self.pos += len(fmt.list_open)
            self.state = "block"
            return True
        if self.state == "block":
            self._skip_space()
            if self.block_calls and fmt.separator and buf.startswith(fmt.separator, self.pos):
                self.pos += len(fmt.separator)
                self._skip_space()
            if self.pos == len(buf):
                return False
            if buf[self.pos] == "{":
                self.obj, self.state = self.pos, "object"
                return True
            if fmt.end and buf.startswith(fmt.end, self.pos):
                self.pos, self.state = self.pos + len(fmt.end), "text"
                return True
            if fmt.end and fmt.end.startswith(buf[self.pos:]):
                return False
            if not self.block_calls:
                self._reject()
            else:  # what follows the calls is content
                self.state = "text" if fmt.begin else "plain"
            return True
        if self.state == "object":
            header = HEADER.match(buf, self.obj)
            if header:
                if header.group(1) not in self.names:
                    return self._not_a_call()
                self._head(header.group(1))
                self.args = self.sent = header.end()
                self.state = "arguments"
                return True
            whole = _decode(buf, self.obj)
            if whole is None:
                return False
            value, end = whole
            arguments = value.get("arguments", value.get("parameters", {})) if isinstance(value, dict) else None
            if isinstance(arguments, str):
                arguments = _decode(arguments, 0)[0] if _decode(arguments, 0) else arguments
            if not isinstance(arguments, dict) or value.get("name") not in self.names:
                return self._not_a_call()
            self._head(value["name"])
            self._arguments(json.dumps(arguments, ensure_ascii=False))
            self._close_call()
            self.pos, self.state = end, "block"
            return True
        if self.state == "arguments":
            value = _decode(buf, self.args)
            if value is None:
                upto = len(buf)
                if fmt.end and buf.find(fmt.end, self.args) >= 0:  # broken arguments: never past the block's end
                    upto = buf.find(fmt.end, self.args)
                if buf[self.args] != '"':  # arguments sent as a JSON string wait until it is whole
                    self._arguments(buf[self.sent:upto])
                    self.sent = max(self.sent, upto)
                return False
            text, end = value
            self._arguments(text if isinstance(text, str) else buf[self.sent:end])
            self.sent, self.state = end, "close"
            return True
        if self.state == "close":
            whole = _decode(buf, self.obj)
            if whole is None:
                return False
            self._close_call()
            self.pos, self.state = whole[1], "block"
            return True
        raise AssertionError(self.state)

    def _not_a_call(self) -> bool:
        if self.block_calls:  # the calls before it stand; the rest is content
            self.pos, self.state = self.obj, "text" if self.fmt.begin else "plain"
        else:
            self._reject()
        return True

    def finish(self) -> list[Piece]:
        """The pieces still held back once the answer is complete; `calls` is final afterwards."""
        if self.state in ("arguments", "close"):  # cut off inside a call: it keeps what was generated
            if self.state == "arguments" and self.buf[self.args:self.args + 1] == '"':
                self._arguments(self.buf[self.args:])
            self._close_call()
        elif self.state in ("list", "block", "object") and not self.block_calls:  # no call after all
            self._content(self.buf[self.block:])
        elif self.state == "object":
            self._content(self.buf[self.obj:])
        elif self.state in ("start", "text", "plain"):
            self._content(self.buf[self.pos:])
        self.pos, self.state = len(self.buf), "plain"
        if not self.calls and self.space:
            self.out.append(Piece(content=self.space))
        self.space = ""
        out, self.out = self.out, []
        return out
