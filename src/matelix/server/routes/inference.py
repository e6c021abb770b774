"""The lab's own inference routes: load/unload a model, its status, and chat (whole or streamed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from matelix.inference.chat import message_text
from matelix.inference.engine import EngineClosed
from matelix.inference.handle import RequestHandle
from matelix.inference.loading import LoadedModel
from matelix.inference.registry import get_registry
from matelix.inference.sampling import MAX_STOP_STRINGS, SEED_MAX, SEED_MIN, SamplingParams
from matelix.server.errors import BUSY_RESPONSES
from matelix.server.inference_errors import INFERENCE_ERRORS, to_api_error
from matelix.server.streaming import STREAM_HEADERS, result_or_cancel, sse, wants_sse


@asynccontextmanager
async def _lifespan(app) -> AsyncIterator[None]:
    yield
    registry = getattr(app.state, "model_registry", None)
    if registry is not None:
        await registry.close()


router = APIRouter(tags=["inference"], lifespan=_lifespan)


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_dir: str | None = Field(None, description="Run id, folder under models/ or training_outputs/, or a hub "
                                                    "repo id (not offline); default: newest finished run.")
    device: str | None = Field(None, description="cpu, cuda, cuda:N, mps or auto (default: auto).")


class UnloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_dir: str | None = Field(None, description="Model to unload; default: every resident model.")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str | list[dict]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation, oldest first.")
    system: str | None = Field(None, description="Prepended as a role='system' message.")
    model_dir: str | None = Field(None, description="Model for this request (loaded if needed); default: the "
                                                    "model in use, else the newest finished run.")
    max_new_tokens: int = Field(256, ge=1, description="At most MATELIX_MAX_NEW_TOKENS; clipped to the "
                                                       "context left.")
    temperature: float = Field(0.7, ge=0.0, le=10.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = off.")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="0 = off.")
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX,
                             description="Same seed + same request → same answer (a 64-bit integer).")
    stop: str | list[str] | None = Field(None, description=f"Up to {MAX_STOP_STRINGS} stop strings, never "
                                                           "included in the answer.")

    def sampling_params(self) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                              top_k=self.top_k, min_p=self.min_p, repetition_penalty=self.repetition_penalty,
                              presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
                              seed=self.seed, stop=tuple(stop))


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatResponse(BaseModel):
    model: str
    response: str
    finish_reason: str
    usage: ChatUsage


@router.post("/load_inference")
async def load_inference(request: Request, body: LoadRequest | None = None) -> dict:
    """Load a model for inference (waits for a load already in progress); returns its status."""
    body = body or LoadRequest()
    try:
        loaded = await get_registry(request.app).acquire(body.model_dir, body.device, prefer_resident=False)
    except INFERENCE_ERRORS as exc:
        raise to_api_error(exc) from exc
    return {"status": "loaded", **loaded.info()}


@router.post("/unload_inference")
async def unload_inference(request: Request, body: UnloadRequest | None = None) -> dict:
    """Unload one model (or all); its in-flight requests end with an error event."""
    body = body or UnloadRequest()
    try:
        unloaded = await get_registry(request.app).unload(body.model_dir)
    except INFERENCE_ERRORS as exc:
        raise to_api_error(exc) from exc
    return {"status": "unloaded" if unloaded else "nothing_loaded", "unloaded": unloaded}


@router.get("/inference_status")
async def inference_status(request: Request) -> dict:
    """Resident models with device, dtype, memory, active and queued requests."""
    # On the event loop, the only place the registry changes: never a half-updated view.
    return get_registry(request.app).status()


async def start_chat(request: Request, body: ChatRequest) -> tuple[LoadedModel, RequestHandle]:
    """Check the limits, resolve the model, render the prompt and submit it through the admission gate;
    every user error is a 4xx (a full queue a 429) before any output."""
    registry = get_registry(request.app)
    messages = [m.model_dump() for m in body.messages]
    params = body.sampling_params()
    for attempt in range(2):
        try:
            texts = [(f"messages[{i}].content", message_text(m["content"], f"messages[{i}]"))
                     for i, m in enumerate(messages)]
            registry.admission.check_limits(texts=[*texts, ("system", body.system or "")], messages=len(messages),
                                            max_new_tokens=body.max_new_tokens, tokens_param="max_new_tokens")
            loaded = await registry.acquire(body.model_dir)
            handles = await registry.admission.submit_prepared(
                loaded, lambda loaded=loaded: [loaded.render_chat(messages, body.system)], params)
            return loaded, handles[0]
        except EngineClosed as exc:  # unloaded between acquire and submit: acquire again once
            if attempt:
                raise to_api_error(exc) from exc
        except INFERENCE_ERRORS as exc:
            raise to_api_error(exc) from exc
    raise AssertionError("unreachable")


@router.post("/chat", responses=BUSY_RESPONSES)
async def chat(request: Request, body: ChatRequest) -> ChatResponse:
    """Answer a conversation in one response."""
    loaded, handle = await start_chat(request, body)
    result = await result_or_cancel(handle, request)
    if result.finish_reason == "error":
        raise to_api_error(EngineClosed(result.error or "generation failed"))
    usage = result.usage
    return ChatResponse(model=loaded.id, response=result.text, finish_reason=result.finish_reason,
                        usage=ChatUsage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                                        total_tokens=usage.total_tokens))


@router.post("/chat_stream", responses=BUSY_RESPONSES)
async def chat_stream(request: Request, body: ChatRequest) -> StreamingResponse:
    """Stream the answer as plain text chunks, or as SSE events with `Accept: text/event-stream`."""
    loaded, handle = await start_chat(request, body)
    if wants_sse(request):
        return StreamingResponse(_sse_events(loaded, handle), media_type="text/event-stream", headers=STREAM_HEADERS)
    return StreamingResponse(_text_chunks(handle), media_type="text/plain; charset=utf-8", headers=STREAM_HEADERS)


async def _text_chunks(handle: RequestHandle) -> AsyncIterator[str]:
    try:
        async for event in handle:
            if event.text:
                yield event.text
            if event.finish_reason == "error":
                yield f"\n[error: {event.error}]"
    finally:
        handle.cancel()


async def _sse_events(loaded: LoadedModel, handle: RequestHandle) -> AsyncIterator[str]:
    try:
        async for event in handle:
            if event.text:
                yield sse({"delta": event.text})
            if event.finish_reason == "error":
                yield sse({"error": {"message": event.error, "type": "server_error", "param": None,
                                     "code": "generation_failed"}})
            elif event.finished:
                usage = event.usage
                yield sse({"model": loaded.id, "finish_reason": event.finish_reason,
                           "usage": {"prompt_tokens": usage.prompt_tokens,
                                     "completion_tokens": usage.completion_tokens,
                                     "total_tokens": usage.total_tokens}})
        yield sse("[DONE]")
    finally:
        handle.cancel()
