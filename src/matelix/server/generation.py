"""The one generation adapter: every generation route (`/chat`, `/chat_stream`, `/v1/*`) starts, collects
and streams its engine requests through here, so limits, retries and error mapping are written once.

    generation = await start(request, model="models/tiny-demo", prompts=lambda m: [m.render_chat(msgs)],
                             params=lambda m: body.sampling_params(...), n=1,
                             limits=Limits(texts=..., messages=len(msgs), max_new_tokens=64),
                             fields=Fields(model="model", prompt="messages"))
    results = await collect(request, generation)    # non-streaming: raises the mapped ApiError
    async for index, event in generation.events():  # streaming: cancels every choice when left early
        ...
    generation.usage(completion_tokens)             # prompt tokens count once per prompt

Every user error is a 4xx (a full queue a 429) before the first byte: the limits are checked before the
prompt is rendered, rendering and tokenising run off the event loop, and a model unloaded between acquire
and submit is acquired once more. A client that leaves a non-streaming request cancels its generations
and the request ends as 499 `client_disconnected` (never a 500).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi import Request

from matelix.inference.engine import EngineClosed
from matelix.inference.handle import GenerationEvent, GenerationResult, RequestHandle, Usage, interleave
from matelix.inference.loading import LoadedModel
from matelix.inference.registry import ModelRegistry
from matelix.inference.sampling import SamplingParams
from matelix.server.errors import ApiError
from matelix.server.inference_errors import INFERENCE_ERRORS, Fields, generation_error, to_api_error

DISCONNECT_POLL_S = 0.25
CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection before the answer"


@dataclass(frozen=True)
class Limits:
    """What the admission gate checks before anything is rendered: (field, text) pairs, message count,
    max new tokens, choices per prompt, stop strings."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    messages: int | None = None
    max_new_tokens: int | None = None
    n: int = 1
    stop: int = 0


@dataclass
class Generation:
    """The engine requests of one HTTP request: `n` choices per prompt (choice index = prompt * n + j)."""

    loaded: LoadedModel
    handles: list[RequestHandle]
    n: int = 1

    def usage(self, completion_tokens: int) -> Usage:
        """Prompt tokens count once per prompt (not per choice); completion tokens over every choice."""
        return Usage(prompt_tokens=sum(h.prompt_tokens for h in self.handles[::self.n]),
                     completion_tokens=completion_tokens)

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()

    async def events(self) -> AsyncIterator[tuple[int, GenerationEvent]]:
        """Every choice's events as they come, tagged with the choice index; leaving early cancels all."""
        async for item in interleave(self.handles):
            yield item


def registry_of(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def start(request: Request, *, model: str | None, prompts: Callable[[LoadedModel], list[list[int]]],
                params: Callable[[LoadedModel], SamplingParams], limits: Limits, fields: Fields,
                n: int = 1, prefer_resident: bool = True, quantization: str | None = None) -> Generation:
    """Check the limits, acquire the model (`quantization` as `ModelRegistry.acquire` takes it), render the
    prompts, build the params (both off the event loop) and queue `n` choices per prompt, all or nothing;
    raises the ApiError for whatever refuses the request."""
    registry = registry_of(request)
    for attempt in range(2):
        try:
            registry.admission.check_limits(texts=limits.texts, messages=limits.messages,
                                            max_new_tokens=limits.max_new_tokens, n=limits.n, stop=limits.stop,
                                            tokens_param=fields.max_tokens)
            loaded = await registry.acquire(model, prefer_resident=prefer_resident, quantization=quantization)
            handles = await registry.admission.submit_prepared(
                loaded, lambda loaded=loaded: prompts(loaded), lambda loaded=loaded: params(loaded), n)
            return Generation(loaded, handles, n)
        except EngineClosed as exc:  # unloaded between acquire and submit: acquire once more
            if attempt:
                raise to_api_error(exc, fields) from exc
        except INFERENCE_ERRORS as exc:
            raise to_api_error(exc, fields) from exc
    raise AssertionError("the loop returns or raises")


class ClientDisconnected(ApiError):
    """The client left before its non-streaming answer was ready; its generations were cancelled."""

    def __init__(self) -> None:
        super().__init__(CLIENT_CLOSED, "the client closed the connection; the generation was cancelled",
                         code="client_disconnected")


async def collect(request: Request, generation: Generation) -> list[GenerationResult]:
    """Every choice's result. Polls for a disconnect meanwhile: a client that leaves cancels every choice
    (ClientDisconnected); a choice that failed raises its mapped error."""
    tasks = [asyncio.ensure_future(h.result()) for h in generation.handles]
    try:
        while True:
            done, pending = await asyncio.wait(tasks, timeout=DISCONNECT_POLL_S)
            if not pending:
                break
            if await request.is_disconnected():
                generation.cancel()
                await asyncio.wait(tasks)
                raise ClientDisconnected()
    finally:
        if not all(t.done() for t in tasks):
            generation.cancel()
            for task in tasks:
                task.cancel()
    results = [t.result() for t in tasks]
    for result in results:
        if result.finish_reason == "error" or result.finish_reason == "cancelled":
            raise generation_error(result.error_kind, result.error)
    return results


def error_of(event: GenerationEvent) -> ApiError:
    """The error a stream sends as its last event when a generation ended with finish_reason "error"."""
    return generation_error(event.error_kind, event.error)
