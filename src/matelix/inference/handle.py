"""What a caller of the engine holds: a `RequestHandle` streaming `GenerationEvent`s, and the final result.

Events are produced on the engine's worker thread and consumed either from asyncio
(`async for event in handle`) or from a plain thread (`for event in handle`). The last event of every
request has `finished == True` and carries `finish_reason` and `usage`:

* `"stop"`: a stop token (EOS / end of turn / `stop_token_ids`) or a stop string ended it;
* `"length"`: `max_new_tokens` (or the model's context) was reached;
* `"cancelled"`: `handle.cancel()` was called (e.g. the client disconnected);
* `"error"`: the engine failed or the model was unloaded; `event.error` says why and `event.error_kind`
  which: `"failed"` (the step or this request's sampler raised) or `"closed"` (the model was unloaded or
  the server is shutting down; a retry can succeed). The HTTP side maps the kind to a status in one place.

`interleave(handles)` merges several handles (n > 1 choices) into one async stream of `(index, event)`.
`handle.add_done_callback(fn)` calls `fn(handle, final_event)` once the request ends (the admission gate
frees the slot and records metrics there); `submitted_at`/`first_token_at` give the time to first token.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

log = logging.getLogger("matelix.inference")

FinishReason = str  # "stop" | "length" | "cancelled" | "error"
ErrorKind = Literal["failed", "closed"]


class Usage(BaseModel):
    """Exact token counts: prompt tokens, and generated tokens (a final stop token counts, as in vLLM).
    The one usage type: the engine's events carry it and every route serialises it as it is."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int
    completion_tokens: int

    @computed_field
    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens + other.prompt_tokens,
                     completion_tokens=self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class TokenLogprob:
    """A token's log-probability under the model (raw logits, before sampling warpers), and the `top` most
    likely alternatives at that position as (token id, logprob), most likely first. A prompt's first token
    has `logprob` None: nothing predicts it."""

    token_id: int
    logprob: float | None
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class GenerationEvent:
    """One step of one request: new text (possibly empty while a character or stop string is pending)
    and the token ids generated in this step."""

    text: str = ""
    token_ids: tuple[int, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    logprobs: tuple[TokenLogprob, ...] = ()
    """One per id in `token_ids`, when the request asked for logprobs."""
    prompt_logprobs: tuple[TokenLogprob, ...] | None = None
    """On the first event, when asked for: one per prompt token (the first one's logprob is None)."""

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class GenerationResult:
    """A whole request, collected: what `await handle.result()` returns."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: tuple[TokenLogprob, ...] | None = None


class RequestHandle:
    """A submitted request. Iterate it for events; `cancel()` makes it leave the batch at the next step."""

    def __init__(self, request_id: str, prompt_tokens: int, max_new_tokens: int,
                 on_cancel: Callable[[], None]):
        self.id = request_id
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        """After clipping to the context left behind the prompt."""
        self._on_cancel = on_cancel
        self._events: queue.SimpleQueue[GenerationEvent] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._cancelled = False
        self._finished = False
        self.submitted_at = time.monotonic()
        self.first_token_at: float | None = None
        """`time.monotonic()` when the first token was generated (time to first token = difference)."""
        self._final: GenerationEvent | None = None
        self._done_callbacks: list[Callable[[RequestHandle, GenerationEvent], None]] = []
        self._done_lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def finished(self) -> bool:
        """True once the engine has produced the final event (it may not have been read yet)."""
        return self._finished

    def cancel(self) -> None:
        """Ask the engine to drop this request; harmless when it has already finished."""
        if not self._cancelled and not self._finished:
            self._cancelled = True
            self._on_cancel()

    def add_done_callback(self, callback: Callable[[RequestHandle, GenerationEvent], None]) -> None:
        """Call `callback(handle, final_event)` once the request ends (at once if it already has); it runs
        on the engine thread, so it must be quick and thread-safe."""
        with self._done_lock:
            final = self._final
            if final is None:
                self._done_callbacks.append(callback)
        if final is not None:
            callback(self, final)

    def _push(self, event: GenerationEvent) -> None:
        """Called by the engine thread."""
        if self._finished:
            return
        if event.token_ids and self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self._finished = event.finished
        if event.finished:  # observers first, so a reader of the final event sees their effects
            with self._done_lock:
                self._final, callbacks = event, self._done_callbacks
                self._done_callbacks = []
            for callback in callbacks:
                try:
                    callback(self, event)
                except Exception:  # an observer must never break the engine's step
                    log.exception("done callback of %s failed", self.id)
        self._events.put(event)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the consumer's loop is closed; nobody is listening any more
                pass

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[GenerationEvent]:
        if self._wake is None:
            self._wake = asyncio.Event()
            self._loop = asyncio.get_running_loop()
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                self._wake.clear()
                if self._events.empty():  # re-check: an event may have landed before clear()
                    await self._wake.wait()
                continue
            yield event
            if event.finished:
                return

    def __iter__(self) -> Iterator[GenerationEvent]:
        while True:
            event = self._events.get()
            yield event
            if event.finished:
                return

    async def result(self) -> GenerationResult:
        """Collect every event into one result (non-streaming use)."""
        return _collect([e async for e in self])

    def wait(self) -> GenerationResult:
        """Blocking `result()` for callers on a plain thread."""
        return _collect(list(self))


def _collect(events: list[GenerationEvent]) -> GenerationResult:
    out = GenerationResult()
    texts = []
    for e in events:
        texts.append(e.text)
        out.token_ids.extend(e.token_ids)
        out.logprobs.extend(e.logprobs)
        if e.prompt_logprobs is not None:
            out.prompt_logprobs = e.prompt_logprobs
        if e.finished:
            out.finish_reason, out.usage, out.error, out.error_kind = e.finish_reason, e.usage, e.error, e.error_kind
    out.text = "".join(texts)
    return out


async def interleave(handles: list[RequestHandle]) -> AsyncIterator[tuple[int, GenerationEvent]]:
    """Events of several handles as they come, tagged with the handle's index; cancels all on early exit."""
    merged: asyncio.Queue[tuple[int, GenerationEvent]] = asyncio.Queue()

    async def pump(index: int, handle: RequestHandle) -> None:
        async for event in handle:
            await merged.put((index, event))

    tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(handles)]
    try:
        remaining = len(handles)
        while remaining:
            index, event = await merged.get()
            remaining -= event.finished
            yield index, event
    finally:
        for task in tasks:
            task.cancel()
        for handle in handles:
            handle.cancel()
