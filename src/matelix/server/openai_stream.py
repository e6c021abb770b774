"""Server-sent event bodies of `/v1/chat/completions` and `/v1/completions` with `stream: true`.

`stream_events(generation, fmt)` frames the choices' events through a `ChunkFormat`: role openings (chat)
or echoed prompts (completions), one delta per event that carries text or logprobs, one finish chunk per
choice, the usage chunk when asked for, then `data: [DONE]`. A generation that ends with an error sends
the error body as its last event before `[DONE]`. Leaving the body early (the client went away) cancels
every choice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from matelix.inference.handle import GenerationEvent, Usage
from matelix.server import generation
from matelix.server.errors import error_body
from matelix.server.generation import Generation
from matelix.server.logprob_format import TokenTexts, chat_logprobs, completion_logprobs
from matelix.server.openai_schema import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatDelta,
    Completion,
    CompletionChoice,
)
from matelix.server.streaming import sse
from matelix.server.tool_parser import Piece, ToolCallParser
from matelix.server.tools import ToolCalls

FINISH_REASONS = ("stop", "length")


class ChunkFormat:
    """How one endpoint frames its stream chunks."""

    def __init__(self, cid: str, created: int, model: str, include_usage: bool, texts: TokenTexts | None = None):
        self.base = {"id": cid, "created": created, "model": model}
        self.include_usage = include_usage
        self.texts = texts
        """Token texts for logprobs; None when the request asked for none."""

    def frame(self, chunk) -> str:
        # OpenAI sends `usage: null` on every chunk only when the client asked for the usage chunk.
        return sse(chunk.model_dump_json(exclude=None if self.include_usage else {"usage"}))

    def opening(self, index: int) -> str | None:
        return None

    def delta(self, index: int, event: GenerationEvent) -> str | None:
        raise NotImplementedError

    def finish(self, index: int, reason: str) -> str:
        raise NotImplementedError

    def usage(self, usage: Usage) -> str:
        raise NotImplementedError


class ChatChunks(ChunkFormat):
    """Chat deltas; with tools, the answer goes through the tool-call reader: content deltas for the text
    around the calls, and per call a `tool_calls` delta with `index`, `id`, `type` and `function.name` as soon
    as the model names a known function, then `function.arguments` deltas as the arguments are generated;
    the choice ends with finish_reason "tool_calls" when it made calls (still "length" when `max_tokens`
    cut one off)."""

    def __init__(self, *args, tool_calls: ToolCalls | None = None, **kw):
        super().__init__(*args, **kw)
        self.tool_calls = tool_calls
        self.parsers: dict[int, ToolCallParser] = {}

    def _chunk(self, choices: list[ChatChunkChoice], usage: Usage | None = None) -> str:
        return self.frame(ChatCompletionChunk(**self.base, choices=choices, usage=usage))

    def _delta(self, index: int, delta: ChatDelta, logprobs=None, finish_reason=None) -> str:
        return self._chunk([ChatChunkChoice(index=index, delta=delta, logprobs=logprobs, finish_reason=finish_reason)])

    def opening(self, index: int) -> str:
        return self._delta(index, ChatDelta(role="assistant", content=""))

    def _pieces(self, index: int, pieces: list[Piece], logprobs=None) -> str:
        """One chunk per piece; the event's logprobs ride on the first (or on an empty delta)."""
        chunks = []
        for piece in pieces:
            if piece.call is not None:
                part = {"index": piece.index, "id": piece.call.id, "type": "function",
                        "function": {"name": piece.call.name, "arguments": ""}}
                delta = ChatDelta(tool_calls=[part])
            elif piece.index is not None:
                delta = ChatDelta(tool_calls=[{"index": piece.index, "function": {"arguments": piece.arguments}}])
            else:
                delta = ChatDelta(content=piece.content)
            chunks.append(self._delta(index, delta, logprobs))
            logprobs = None
        if logprobs is not None:
            chunks.append(self._delta(index, ChatDelta(content=""), logprobs))
        return "".join(chunks)

    def delta(self, index: int, event: GenerationEvent) -> str | None:
        logprobs = chat_logprobs(list(event.logprobs), self.texts) if self.texts and event.logprobs else None
        if self.tool_calls is None:
            if not event.text and logprobs is None:
                return None
            return self._delta(index, ChatDelta(content=event.text), logprobs)
        parser = self.parsers.setdefault(index, self.tool_calls.stream())
        return self._pieces(index, parser.push(event.text) if event.text else [], logprobs) or None

    def finish(self, index: int, reason: str) -> str:
        parser = self.parsers.pop(index, None)
        chunks = ""
        if parser is not None:
            chunks = self._pieces(index, parser.finish())
            reason = "tool_calls" if parser.calls and reason == "stop" else reason
        return chunks + self._delta(index, ChatDelta(), finish_reason=reason)

    def usage(self, usage: Usage) -> str:
        return self._chunk([], usage)


class CompletionChunks(ChunkFormat):
    """Completion text chunks; an echoed prompt comes first (with its logprobs, when asked for, so then
    with the choice's first event), `text_offset` counts from the start of the choice's text."""

    def __init__(self, *args, echoes: list[str] | None = None, **kw):
        super().__init__(*args, **kw)
        self.echoes = echoes
        self.offsets: dict[int, int] = {}

    def _chunk(self, choices: list[CompletionChoice], usage: Usage | None = None) -> str:
        return self.frame(Completion(**self.base, choices=choices, usage=usage))

    def opening(self, index: int) -> str | None:
        if self.echoes and self.echoes[index] and self.texts is None:
            return self._chunk([CompletionChoice(index=index, text=self.echoes[index])])
        return None

    def delta(self, index: int, event: GenerationEvent) -> str | None:
        text, logprobs = event.text, None
        if self.texts is not None:
            entries = list(event.logprobs)
            if event.prompt_logprobs is not None:  # the echo, with the first event
                text, entries = self.echoes[index] + text, [*event.prompt_logprobs, *entries]
            if entries:
                logprobs = completion_logprobs(entries, self.texts, self.offsets.get(index, 0))
                self.offsets[index] = logprobs.text_offset[-1] + len(logprobs.tokens[-1])
        if not text and logprobs is None:
            return None
        return self._chunk([CompletionChoice(index=index, text=text, logprobs=logprobs)])

    def finish(self, index: int, reason: str) -> str:
        return self._chunk([CompletionChoice(index=index, text="", finish_reason=reason)])

    def usage(self, usage: Usage) -> str:
        return self._chunk([], usage)


async def stream_events(started: Generation, fmt: ChunkFormat) -> AsyncIterator[str]:
    """SSE body: openings, then deltas interleaved by choice index, one finish chunk per choice, the usage
    chunk when asked for, `[DONE]`. Leaving early (disconnect, error) cancels every choice."""
    completion_tokens = 0
    for index in range(len(started.handles)):
        opening = fmt.opening(index)
        if opening:
            yield opening
    async for index, event in started.events():
        if event.finished and event.finish_reason not in FINISH_REASONS:
            error = generation.error_of(event)
            yield sse(error_body(error.message, type=error.type, code=error.code))
            break
        delta = fmt.delta(index, event)
        if delta:
            yield delta
        if event.finished:
            completion_tokens += event.usage.completion_tokens
            yield fmt.finish(index, event.finish_reason)
    else:
        if fmt.include_usage:
            yield fmt.usage(started.usage(completion_tokens))
    yield sse("[DONE]")
