"""The lab's own inference routes: load/unload a model, its status, and chat (whole or streamed).

Generation goes through the one adapter (`server.generation`), like `/v1/*`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from matelix.inference.handle import Usage
from matelix.inference.sampling import SEED_MAX, SEED_MIN, SamplingParams
from matelix.server import generation
from matelix.server.deps import RegistryDep
from matelix.server.errors import BUSY_RESPONSES, error_body
from matelix.server.generation import Generation, Limits
from matelix.server.inference_errors import INFERENCE_ERRORS, Fields, to_api_error
from matelix.server.messages import ChatMessage, texts_of
from matelix.server.streaming import STREAM_HEADERS, sse, wants_sse
from matelix.server.vllm_forward import chat_response, forwarder_of, lab_chat_stream
from matelix.settings import Quantization

router = APIRouter(tags=["inference"])
FIELDS = Fields(model="model_dir", prompt="messages", max_tokens="max_new_tokens")


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_dir: str | None = Field(None, description="Run id, folder under models/ or training_outputs/, or a hub "
                                                    "repo id (not offline); default: newest finished run.")
    device: str | None = Field(None, description="cpu, cuda, cuda:N, mps or auto (default: auto).")
    quantization: Quantization | None = Field(
        None, description="Weights: none (fp32), int8 (CPU only, the fastest decode) or fp16 (CPU only, "
                          "exact, fast with many clients); default: "
                          "MATELIX_QUANTIZATION. A resident model loaded otherwise is reloaded.")


class UnloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_dir: str | None = Field(None, description="Model to unload; default: every resident model.")


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
    stop: str | list[str] | None = Field(None, description="Stop strings (at most MATELIX_MAX_STOP_STRINGS), "
                                                           "never included in the answer.")

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else (self.stop or [])

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                              top_k=self.top_k, min_p=self.min_p, repetition_penalty=self.repetition_penalty,
                              presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
                              seed=self.seed, stop=tuple(self.stops))


class ChatResponse(BaseModel):
    model: str
    response: str
    finish_reason: str
    usage: Usage


@router.post("/load_inference")
async def load_inference(registry: RegistryDep, body: LoadRequest | None = None) -> dict:
    """Load a model for inference (waits for a load already in progress); returns its status."""
    body = body or LoadRequest()
    try:
        loaded = await registry.acquire(body.model_dir, body.device, prefer_resident=False,
                                         quantization=body.quantization)
    except INFERENCE_ERRORS as exc:
        raise to_api_error(exc) from exc
    return {"status": "loaded", **loaded.info()}


@router.post("/unload_inference")
async def unload_inference(registry: RegistryDep, body: UnloadRequest | None = None) -> dict:
    """Unload one model (or all); its in-flight requests end with an error event."""
    body = body or UnloadRequest()
    try:
        unloaded = await registry.unload(body.model_dir)
    except INFERENCE_ERRORS as exc:
        raise to_api_error(exc) from exc
    return {"status": "unloaded" if unloaded else "nothing_loaded", "unloaded": unloaded}


@router.get("/inference_status")
async def inference_status(registry: RegistryDep) -> dict:
    """Resident models with device, dtype, memory, active and queued requests."""
    # On the event loop, the only place the registry changes: never a half-updated view.
    return registry.status()


async def start_chat(request: Request, body: ChatRequest) -> Generation:
    """Submit the conversation through the generation adapter; every user error is a 4xx (a full queue a
    429) before any output."""
    messages = [m.as_dict() for m in body.messages]
    return await generation.start(request, model=body.model_dir,
                                  prompts=lambda loaded: [loaded.render_chat(messages, body.system)],
                                  params=lambda _: body.sampling_params(), limits=chat_limits(body),
                                  fields=FIELDS)


def chat_limits(body: ChatRequest) -> Limits:
    return Limits(texts=[*texts_of(body.messages), ("system", body.system or "")], messages=len(body.messages),
                  max_new_tokens=body.max_new_tokens, stop=len(body.stops))


@router.post("/chat", responses=BUSY_RESPONSES)
async def chat(request: Request, body: ChatRequest) -> ChatResponse:
    """Answer a conversation in one response."""
    if forwarder := forwarder_of(request):  # MATELIX_INFERENCE_BACKEND=vllm
        return ChatResponse(**chat_response(*await forwarder.chat(body, FIELDS, chat_limits(body))))
    started = await start_chat(request, body)
    [result] = await generation.collect(request, started)
    return ChatResponse(model=started.loaded.id, response=result.text, finish_reason=result.finish_reason,
                        usage=result.usage)


@router.post("/chat_stream", responses=BUSY_RESPONSES)
async def chat_stream(request: Request, body: ChatRequest) -> StreamingResponse:
    """Stream the answer as plain text chunks, or as SSE events with `Accept: text/event-stream`."""
    if forwarder := forwarder_of(request):  # MATELIX_INFERENCE_BACKEND=vllm
        events = await forwarder.chat_events(body, FIELDS, chat_limits(body))
        body_iter = lab_chat_stream(events, forwarder.upstream.model_id(body.model_dir), wants_sse(request))
        media = "text/event-stream" if wants_sse(request) else "text/plain; charset=utf-8"
        return StreamingResponse(body_iter, media_type=media, headers=STREAM_HEADERS)
    started = await start_chat(request, body)
    if wants_sse(request):
        return StreamingResponse(_sse_events(started), media_type="text/event-stream", headers=STREAM_HEADERS)
    return StreamingResponse(_text_chunks(started), media_type="text/plain; charset=utf-8", headers=STREAM_HEADERS)


async def _text_chunks(started: Generation) -> AsyncIterator[str]:
    async for _, event in started.events():
        if event.text:
            yield event.text
        if event.finish_reason == "error":
            yield f"\n[error: {event.error}]"


async def _sse_events(started: Generation) -> AsyncIterator[str]:
    async for _, event in started.events():
        if event.text:
            yield sse({"delta": event.text})
        if event.finish_reason == "error":
            error = generation.error_of(event)
            yield sse(error_body(error.message, type=error.type, code=error.code))
        elif event.finished:
            yield sse({"model": started.loaded.id, "finish_reason": event.finish_reason,
                       "usage": event.usage.model_dump()})
    yield sse("[DONE]")
