"""OpenAI-compatible API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`.

A thin adapter over the inference engine (`matelix.inference`): resolve the model, render the prompt,
submit one engine request per choice, and shape the results in the OpenAI wire format — a whole response,
or server-sent events (`chat.completion.chunk` / `text_completion` chunks, then `data: [DONE]`).

Invalid bodies are 400 here (not the lab's 422), because the `openai` SDK maps 400 to `BadRequestError`
and tools built on it expect that; `param` names the field. Everything a user can get wrong is answered
before the stream starts; an error after that is sent as `data: {"error": {...}}` followed by
`data: [DONE]`. A client that disconnects cancels its generations.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute

from matelix import catalog
from matelix.inference.engine import EngineClosed, PromptTooLong
from matelix.inference.handle import GenerationEvent, RequestHandle, interleave
from matelix.inference.loading import LoadedModel
from matelix.inference.openai_schema import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ModelCard,
    ModelList,
    SamplingRequest,
    Usage,
    new_id,
    now,
)
from matelix.inference.registry import get_registry
from matelix.inference.sampling import SamplingParams
from matelix.server.errors import (
    BUSY_RESPONSES,
    ApiError,
    describe_validation_errors,
    error_body,
    error_response,
)
from matelix.server.inference_errors import INFERENCE_ERRORS, to_api_error
from matelix.server.streaming import STREAM_HEADERS, result_or_cancel, sse

OWNER = "matelix"
FINISH_REASONS = ("stop", "length")


class OpenAIRoute(APIRoute):
    """Renders body validation errors as 400 `invalid_request_error` with `param` set."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route_handler(request: Request):
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = list(exc.errors())
                message, param = describe_validation_errors(errors)
                code = "missing_required_parameter" if any(e.get("type") == "missing" for e in errors) \
                    else "invalid_value"
                return error_response(400, message.replace("Value error, ", ""), param=param, code=code)

        return route_handler


router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


# ----- models ---------------------------------------------------------------------------------------


async def model_cards(app) -> list[ModelCard]:
    """Local models under `models/` (id relative to home), finished runs (id = run folder name), and any
    other resident model (e.g. a hub model loaded with `/load_inference`)."""
    # The registry is read on the event loop, which is the only place it changes; the disk scan runs on a
    # worker thread.
    resident = get_registry(app).status()["loaded"]
    found = await asyncio.to_thread(catalog.list_models, app.state.settings)
    cards = [ModelCard(id=m["id"], created=m["created"], owned_by=OWNER) for m in found]
    listed = {c.id for c in cards}
    for info in resident:
        if info["id"] not in listed:
            cards.append(ModelCard(id=info["id"], created=int(info["loaded_at"]), owned_by=OWNER))
    return cards


async def find_model(app, model_id: str) -> ModelCard:
    for card in await model_cards(app):
        if card.id == model_id:
            return card
    raise ApiError(404, f"The model '{model_id}' does not exist; GET /v1/models lists the available ones.",
                   param="model", code="model_not_found")


@router.get("/models")
async def list_models(request: Request) -> ModelList:
    """Models usable as `model`: local models and finished training runs."""
    return ModelList(data=await model_cards(request.app))


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> ModelCard:
    """One model by id."""
    return await find_model(request.app, model_id)


# ----- submitting -----------------------------------------------------------------------------------


def sampling_params(body: SamplingRequest, max_new_tokens: int) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=max_new_tokens, temperature=body.temperature, top_p=body.top_p,
        top_k=max(body.top_k, 0), min_p=body.min_p, repetition_penalty=body.repetition_penalty,
        presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty, seed=body.seed,
        stop=tuple(body.stop or ()), stop_token_ids=tuple(body.stop_token_ids or ()), ignore_eos=body.ignore_eos)


async def submit(request: Request, body: SamplingRequest, prompts: Callable[[LoadedModel], list[list[int]]],
                 max_new_tokens: int | None, prompt_param: str, *, texts: list[tuple[str, str]],
                 messages: int | None = None) -> tuple[LoadedModel, list[RequestHandle]]:
    """Check the server's limits, load the model and queue `n` choices per prompt through the admission
    gate (choice index = prompt index * n + j); all or nothing, so the caller answers a plain 4xx/429."""
    await find_model(request.app, body.model)
    registry = get_registry(request.app)
    for attempt in range(2):
        try:
            registry.admission.check_limits(texts=texts, messages=messages, max_new_tokens=max_new_tokens,
                                            n=body.n)
            loaded = await registry.acquire(body.model, prefer_resident=False)
            # Without a limit a completion may fill the context; the engine clips to what is left.
            params = sampling_params(body, max_new_tokens or loaded.context_length)
            handles = await registry.admission.submit_prepared(loaded, lambda loaded=loaded: prompts(loaded),
                                                                params, body.n)
            return loaded, handles
        except EngineClosed as exc:  # unloaded between acquire and submit: acquire once more
            if attempt:
                raise to_api_error(exc, model_param="model") from exc
        except INFERENCE_ERRORS as exc:
            if isinstance(exc, PromptTooLong):
                exc.param = prompt_param
            raise to_api_error(exc, model_param="model") from exc
    raise AssertionError("unreachable")


def _cancel(handles: list[RequestHandle]) -> None:
    for handle in handles:
        handle.cancel()


def usage_of(handles: list[RequestHandle], n: int, completion_tokens: int) -> Usage:
    """Prompt tokens count once per prompt (not per choice); completion tokens over every choice."""
    return Usage.of(sum(h.prompt_tokens for h in handles[::n]), completion_tokens)


def generation_failed(message: str | None) -> ApiError:
    message = message or "generation failed"
    if message.startswith("generation failed"):
        return ApiError(500, message, code="generation_failed")
    return ApiError(503, f"{message}; retry the request", code="model_unloaded", headers={"Retry-After": "1"})


async def collect(request: Request, handles: list[RequestHandle]):
    """Every choice's result; a disconnecting client cancels them all."""
    results = await asyncio.gather(*(result_or_cancel(h, request) for h in handles))
    for result in results:
        if result.finish_reason not in FINISH_REASONS:
            raise generation_failed(result.error)
    return results


# ----- streaming ------------------------------------------------------------------------------------


class ChunkFormat:
    """How one endpoint frames its stream chunks (chat deltas or completion text)."""

    def __init__(self, include_usage: bool):
        self.include_usage = include_usage

    def frame(self, chunk) -> str:
        # OpenAI sends `usage: null` on every chunk only when the client asked for the usage chunk.
        return sse(chunk.model_dump_json(exclude=None if self.include_usage else {"usage"}))

    def opening(self, index: int) -> str | None:
        return None

    def text(self, index: int, text: str) -> str:
        raise NotImplementedError

    def finish(self, index: int, reason: str) -> str:
        raise NotImplementedError

    def usage(self, usage: Usage) -> str:
        raise NotImplementedError


class ChatChunks(ChunkFormat):
    def __init__(self, cid: str, created: int, model: str, include_usage: bool):
        super().__init__(include_usage)
        self.base = {"id": cid, "created": created, "model": model}

    def _chunk(self, choices: list[ChatChunkChoice], usage: Usage | None = None) -> str:
        return self.frame(ChatCompletionChunk(**self.base, choices=choices, usage=usage))

    def opening(self, index: int) -> str:
        return self._chunk([ChatChunkChoice(index=index, delta=ChatDelta(role="assistant", content=""))])

    def text(self, index: int, text: str) -> str:
        return self._chunk([ChatChunkChoice(index=index, delta=ChatDelta(content=text))])

    def finish(self, index: int, reason: str) -> str:
        return self._chunk([ChatChunkChoice(index=index, delta=ChatDelta(), finish_reason=reason)])

    def usage(self, usage: Usage) -> str:
        return self._chunk([], usage)


class CompletionChunks(ChunkFormat):
    def __init__(self, cid: str, created: int, model: str, include_usage: bool, echoes: list[str] | None):
        super().__init__(include_usage)
        self.base = {"id": cid, "created": created, "model": model}
        self.echoes = echoes

    def _chunk(self, choices: list[CompletionChoice], usage: Usage | None = None) -> str:
        return self.frame(Completion(**self.base, choices=choices, usage=usage))

    def opening(self, index: int) -> str | None:
        return self.text(index, self.echoes[index]) if self.echoes and self.echoes[index] else None

    def text(self, index: int, text: str) -> str:
        return self._chunk([CompletionChoice(index=index, text=text)])

    def finish(self, index: int, reason: str) -> str:
        return self._chunk([CompletionChoice(index=index, text="", finish_reason=reason)])

    def usage(self, usage: Usage) -> str:
        return self._chunk([], usage)


async def stream_events(handles: list[RequestHandle], n: int, fmt: ChunkFormat) -> AsyncIterator[str]:
    """SSE body: openings, then deltas interleaved by choice index, one finish chunk per choice, the usage
    chunk when asked for, `[DONE]`. Leaving early (disconnect, error) cancels every choice."""
    completion_tokens = 0
    try:
        for index in range(len(handles)):
            opening = fmt.opening(index)
            if opening:
                yield opening
        async for index, event in interleave(handles):
            if event.finished and event.finish_reason not in FINISH_REASONS:
                yield error_event(event)
                break
            if event.text:
                yield fmt.text(index, event.text)
            if event.finished:
                completion_tokens += event.usage.completion_tokens
                yield fmt.finish(index, event.finish_reason)
        else:
            if fmt.include_usage:
                yield fmt.usage(usage_of(handles, n, completion_tokens))
        yield sse("[DONE]")
    finally:
        _cancel(handles)


def error_event(event: GenerationEvent) -> str:
    error = generation_failed(event.error)
    return sse(error_body(error.message, type=error.type, param=None, code=error.code))


def event_stream(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=STREAM_HEADERS)


# ----- endpoints ------------------------------------------------------------------------------------


def documented(model: type) -> dict:
    """OpenAPI: the JSON body, or with `stream: true` server-sent events of chunks."""
    return {200: {"model": model, "content": {"text/event-stream": {"schema": {"type": "string"}}},
                  "description": "The whole response, or with `stream: true` an event stream of chunks."}}


@router.post("/chat/completions", response_model=None, responses={**documented(ChatCompletion), **BUSY_RESPONSES})
async def chat_completions(request: Request, body: ChatCompletionRequest) -> ChatCompletion | StreamingResponse:
    """Answer a conversation: a `chat.completion`, or `chat.completion.chunk` events with `stream`."""
    messages = [{"role": m.role, "content": m.content} for m in body.messages]
    texts = [(f"messages[{i}].content", m["content"]) for i, m in enumerate(messages)]
    loaded, handles = await submit(request, body, lambda model: [model.render_chat(messages)],
                                   body.max_new_tokens, "messages", texts=texts, messages=len(messages))
    cid, created = new_id("chatcmpl"), now()
    if body.stream:
        fmt = ChatChunks(cid, created, body.model, body.include_usage)
        return event_stream(stream_events(handles, body.n, fmt))
    results = await collect(request, handles)
    choices = [ChatChoice(index=i, message=AssistantMessage(content=r.text), finish_reason=r.finish_reason)
               for i, r in enumerate(results)]
    usage = usage_of(handles, body.n, sum(r.usage.completion_tokens for r in results))
    return ChatCompletion(id=cid, created=created, model=body.model, choices=choices, usage=usage)


@router.post("/completions", response_model=None, responses={**documented(Completion), **BUSY_RESPONSES})
async def completions(request: Request, body: CompletionRequest) -> Completion | StreamingResponse:
    """Continue text prompts: a `text_completion`, or `text_completion` chunk events with `stream`."""
    def encode(model: LoadedModel) -> list[list[int]]:
        return [model.encode(p) if isinstance(p, str) else list(p) for p in body.prompt]

    texts = [(f"prompt[{i}]", p) for i, p in enumerate(body.prompt) if isinstance(p, str)]
    loaded, handles = await submit(request, body, encode, body.max_new_tokens, "prompt", texts=texts)
    echoes = None
    if body.echo:
        texts = [p if isinstance(p, str) else loaded.tokenizer.decode(p) for p in body.prompt]
        echoes = [text for text in texts for _ in range(body.n)]
    cid, created = new_id("cmpl"), now()
    if body.stream:
        fmt = CompletionChunks(cid, created, body.model, body.include_usage, echoes)
        return event_stream(stream_events(handles, body.n, fmt))
    results = await collect(request, handles)
    choices = [CompletionChoice(index=i, text=(echoes[i] if echoes else "") + r.text, finish_reason=r.finish_reason)
               for i, r in enumerate(results)]
    usage = usage_of(handles, body.n, sum(r.usage.completion_tokens for r in results))
    return Completion(id=cid, created=created, model=body.model, choices=choices, usage=usage)
