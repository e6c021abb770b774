"""OpenAI-compatible API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`.

A thin adapter over the inference engine (`matelix.inference`): resolve the model, render the prompt,
submit one engine request per choice, and shape the results in the OpenAI wire format — a whole response,
or server-sent events (`chat.completion.chunk` / `text_completion` chunks, then `data: [DONE]`).

Invalid bodies are 400 here (not the lab's 422, see `server.openai_route`), because the `openai` SDK maps 400
to `BadRequestError` and tools built on it expect that; `param` names the field. Everything a user can get wrong is answered
before the stream starts; an error after that is sent as `data: {"error": {...}}` followed by
`data: [DONE]`. A client that disconnects cancels its generations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from matelix.inference.loading import LoadedModel
from matelix.server import generation
from matelix.server.errors import BUSY_RESPONSES
from matelix.server.logprob_format import TokenTexts, chat_logprobs, completion_logprobs
from matelix.server.openai_route import OpenAIRoute, find_model, model_cards, start_chat, submit
from matelix.server.openai_schema import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ModelCard,
    ModelList,
    new_id,
    now,
)
from matelix.server.openai_stream import ChatChunks, CompletionChunks, stream_events
from matelix.server.streaming import STREAM_HEADERS
from matelix.server.vllm_forward import forwarder_of

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


@router.get("/models")
async def list_models(request: Request) -> ModelList:
    """Models usable as `model`: local models and finished training runs."""
    return ModelList(data=await model_cards(request.app))


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> ModelCard:
    """One model by id."""
    return await find_model(request.app, model_id)


# ----- endpoints ------------------------------------------------------------------------------------


def event_stream(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=STREAM_HEADERS)


def documented(model: type) -> dict:
    """OpenAPI: the JSON body, or with `stream: true` server-sent events of chunks."""
    return {200: {"model": model, "content": {"text/event-stream": {"schema": {"type": "string"}}},
                  "description": "The whole response, or with `stream: true` an event stream of chunks."}}


@router.post("/chat/completions", response_model=None, responses={**documented(ChatCompletion), **BUSY_RESPONSES})
async def chat_completions(request: Request, body: ChatCompletionRequest) -> ChatCompletion | StreamingResponse:
    """Answer a conversation: a `chat.completion`, or `chat.completion.chunk` events with `stream`."""
    if forwarder := forwarder_of(request):  # MATELIX_INFERENCE_BACKEND=vllm
        return await forwarder.openai(request, body, "/v1/chat/completions")
    started, calls = await start_chat(request, body)
    cid, created = new_id("chatcmpl"), now()
    texts = TokenTexts(started.loaded.tokenizer) if body.logprobs else None
    if body.stream:
        fmt = ChatChunks(cid, created, body.model, body.include_usage, texts, tool_calls=calls)
        return event_stream(stream_events(started, fmt))
    results = await generation.collect(request, started)
    choices = []
    for i, r in enumerate(results):
        content, found = calls.parse(r.text) if calls else (r.text, [])
        message = AssistantMessage(content=content, tool_calls=[c.wire() for c in found] or None)
        reason = "tool_calls" if found and r.finish_reason == "stop" else r.finish_reason
        choices.append(ChatChoice(index=i, message=message, finish_reason=reason,
                                  logprobs=chat_logprobs(r.logprobs, texts) if texts else None))
    usage = started.usage(sum(r.usage.completion_tokens for r in results))
    return ChatCompletion(id=cid, created=created, model=body.model, choices=choices, usage=usage)


@router.post("/completions", response_model=None, responses={**documented(Completion), **BUSY_RESPONSES})
async def completions(request: Request, body: CompletionRequest) -> Completion | StreamingResponse:
    """Continue text prompts: a `text_completion`, or `text_completion` chunk events with `stream`."""
    if forwarder := forwarder_of(request):  # MATELIX_INFERENCE_BACKEND=vllm
        return await forwarder.openai(request, body, "/v1/completions")
    def encode(model: LoadedModel) -> list[list[int]]:
        # An empty text prompt starts from the model's BOS token when it has one (as vLLM does), so the model
        # generates unconditioned text instead of the request being refused as empty.
        bos = model.tokenizer.bos_token_id
        return [(model.encode(p) or ([bos] if bos is not None else [])) if isinstance(p, str) else list(p)
                for p in body.prompt]

    texts = [(f"prompt[{i}]", p) for i, p in enumerate(body.prompt) if isinstance(p, str)]
    started = await submit(request, body, encode, "prompt", texts=texts)
    echoes = None
    if body.echo:
        texts = [p if isinstance(p, str) else started.loaded.tokenizer.decode(p) for p in body.prompt]
        echoes = [text for text in texts for _ in range(body.n)]
    cid, created = new_id("cmpl"), now()
    texts = TokenTexts(started.loaded.tokenizer) if body.logprobs is not None else None
    if body.stream:
        fmt = CompletionChunks(cid, created, body.model, body.include_usage, texts, echoes=echoes)
        return event_stream(stream_events(started, fmt))
    results = await generation.collect(request, started)
    choices = []
    for i, r in enumerate(results):
        logprobs = None
        if texts is not None:
            logprobs = completion_logprobs([*(r.prompt_logprobs or ()), *r.logprobs], texts)
        choices.append(CompletionChoice(index=i, text=(echoes[i] if echoes else "") + r.text,
                                        finish_reason=r.finish_reason, logprobs=logprobs))
    usage = started.usage(sum(r.usage.completion_tokens for r in results))
    return Completion(id=cid, created=created, model=body.model, choices=choices, usage=usage)
