"""Admission of generation requests: the limits every inference adapter (`/chat`, `/chat_stream`, `/v1/*`)
goes through, in one place.

    gate = registry.admission                       # one per server
    gate.check_limits(texts=[("messages[0].content", "Hi")], messages=1, max_new_tokens=64, n=1)  # → 400
    handles = gate.submit(loaded, prompts, params, n=2)                  # Overloaded → 429 + Retry-After
    handles = await gate.submit_prepared(loaded, lambda: [loaded.encode("Hi")], params)  # off the event loop

* Request shape (settings `max_messages`, `max_message_chars`, `max_new_tokens`, `max_n`,
  `max_stop_strings`): checked before a
  prompt is rendered or tokenised, so an oversized request costs nothing.
* Concurrency: every queued or running generation (one per choice) counts until the engine sends its final
  event. A request that would take the server past `max_concurrent_generations + max_queued_generations`
  is refused whole with `Overloaded`; nothing of it is queued.
* Observation: each finished generation is reported to `on_finished(model, prompt_tokens=,
  completion_tokens=, ttft_s=)` (the server wires Prometheus here), so both adapters are counted alike.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable

from matelix.inference.engine import RequestRejected
from matelix.inference.handle import GenerationEvent, RequestHandle
from matelix.inference.sampling import SamplingParams
from matelix.settings import Settings

log = logging.getLogger("matelix.inference")

RETRY_AFTER_S = 1


class RequestLimitExceeded(RequestRejected):
    """A request larger than the server's configured limits; `param` names the field."""


class Overloaded(RuntimeError):
    """The server already holds as many generations as it may queue; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AdmissionGate:
    """Server-wide limits on generation requests and the count of generations in flight."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.capacity = settings.max_concurrent_generations + settings.max_queued_generations
        self.on_finished: Callable[..., None] | None = None
        self._lock = threading.Lock()
        self._in_flight: set[RequestHandle] = set()
        self.refused = 0

    # ----- request shape ------------------------------------------------------------------------

    def check_limits(self, *, texts: Iterable[tuple[str, str]] = (), messages: int | None = None,
                     max_new_tokens: int | None = None, n: int = 1, stop: int = 0,
                     tokens_param: str = "max_tokens") -> None:
        """Raise RequestLimitExceeded naming the first field over its configured limit; `texts` holds
        (field name, text) pairs such as ("messages[0].content", "Hi")."""
        s = self.settings
        if messages is not None and messages > s.max_messages:
            raise RequestLimitExceeded(f"messages: {messages} messages are more than the limit of "
                                       f"{s.max_messages} (MATELIX_MAX_MESSAGES)", "messages")
        for param, text in texts:
            if len(text) > s.max_message_chars:
                raise RequestLimitExceeded(f"{param}: {len(text):,} characters are more than the limit of "
                                           f"{s.max_message_chars:,} (MATELIX_MAX_MESSAGE_CHARS)", param)
        if max_new_tokens is not None and max_new_tokens > s.max_new_tokens:
            raise RequestLimitExceeded(f"{tokens_param}: {max_new_tokens} is more than the limit of "
                                       f"{s.max_new_tokens} (MATELIX_MAX_NEW_TOKENS)", tokens_param)
        if n > s.max_n:
            raise RequestLimitExceeded(f"n: {n} choices are more than the limit of {s.max_n} (MATELIX_MAX_N)", "n")
        if stop > s.max_stop_strings:
            raise RequestLimitExceeded(f"stop: {stop} stop strings are more than the limit of {s.max_stop_strings} "
                                       "(MATELIX_MAX_STOP_STRINGS)", "stop")

    # ----- concurrency --------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def submit(self, loaded, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> list[RequestHandle]:
        """Queue `n` choices per prompt on `loaded`'s engine, all or nothing (choice index = prompt * n + j).

        Raises Overloaded before anything is queued; RequestRejected (with "prompt i: " when there are
        several prompts) after cancelling what was already queued; EngineClosed as the engine raises it.
        """
        count = len(prompts) * n
        with self._lock:
            if len(self._in_flight) + count > self.capacity:
                self.refused += 1
                raise Overloaded(f"the server is busy: {len(self._in_flight)} generations are queued or running "
                                 f"and at most {self.capacity} are allowed; retry in {RETRY_AFTER_S} s")
        handles: list[RequestHandle] = []
        try:
            for i, ids in enumerate(prompts):
                try:
                    handles += loaded.engine.submit_many(ids, params, n)
                except RequestRejected as exc:
                    if len(prompts) > 1:  # say which prompt of the list
                        exc.args = (f"prompt {i}: {exc}",)
                    raise
        except BaseException:
            for handle in handles:
                handle.cancel()
            raise
        with self._lock:
            self._in_flight.update(handles)
        model = loaded.id
        for handle in handles:
            handle.add_done_callback(lambda h, event, model=model: self._finished(model, h, event))
        return handles

    async def submit_prepared(self, loaded, prepare: Callable[[], list[list[int]]],
                              params: SamplingParams | Callable[[], SamplingParams], n: int = 1) -> list[RequestHandle]:
        """`submit(loaded, prepare(), params, n)` on a worker thread, so rendering and tokenising the prompts,
        building the params (a callable: e.g. compiling a grammar) and setting up their samplers never block
        the event loop. Raises what `prepare`, `params` and `submit` raise; when the caller is cancelled
        meanwhile (client gone), whatever gets queued is cancelled at once."""
        def run() -> list[RequestHandle]:
            prompts = prepare()
            return self.submit(loaded, prompts, params() if callable(params) else params, n)

        work = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            work.add_done_callback(_cancel_queued)
            raise

    def _finished(self, model: str, handle: RequestHandle, event: GenerationEvent) -> None:
        with self._lock:
            self._in_flight.discard(handle)
        if self.on_finished is None or event.usage is None:
            return
        ttft = handle.first_token_at - handle.submitted_at if handle.first_token_at is not None else None
        self.on_finished(model, prompt_tokens=event.usage.prompt_tokens,
                         completion_tokens=event.usage.completion_tokens, ttft_s=ttft)


def _cancel_queued(work: asyncio.Future) -> None:
    if not work.cancelled() and work.exception() is None:
        for handle in work.result():
            handle.cancel()
