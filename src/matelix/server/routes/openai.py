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
from matelix.inference.chat import render_chat
from matelix.inference.grammar import compile_grammar
from matelix.inference.loading import LoadedModel
from matelix.inference.sampling import SamplingParams
from matelix.server import generation
from matelix.server.errors import (
    BUSY_RESPONSES,
    ApiError,
    describe_validation_errors,
    error_response,
    log_client_error,
)
from matelix.server.generation import Generation, Limits
from matelix.server.inference_errors import Fields
from matelix.server.logprob_format import TokenTexts, chat_logprobs, completion_logprobs
from matelix.server.messages import texts_of
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
    SamplingRequest,
    new_id,
    now,
)
from matelix.server.openai_stream import ChatChunks, CompletionChunks, stream_events
from matelix.server.streaming import STREAM_HEADERS
from matelix.server.tools import ToolCalls, prompt_messages

OWNER = "matelix"


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
                message = message.replace("Value error, ", "")
                log_client_error(request, 400, code, message)
                return error_response(400, message, param=param, code=code)

        return route_handler


router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


# ----- models ---------------------------------------------------------------------------------------


async def model_cards(app) -> list[ModelCard]:
    """Local models under `models/` (id relative to home), finished runs (id = run folder name), and any
    other resident model (e.g. a hub model loaded with `/load_inference`)."""
    # The registry is read on the event loop, which is the only place it changes; the disk scan runs on a
    # worker thread.
    resident = app.state.registry.status()["loaded"]
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


async def submit(request: Request, body: SamplingRequest, prompts: Callable[[LoadedModel], list[list[int]]],
                 prompt_param: str, *, texts: list[tuple[str, str]], messages: int | None = None) -> Generation:
    """Check the model id, then queue `n` choices per prompt through the generation adapter."""
    await find_model(request.app, body.model)
    max_new_tokens = body.max_new_tokens
    limits = Limits(texts=texts, messages=messages, max_new_tokens=max_new_tokens, n=body.n,
                    stop=len(body.stop or ()))
    spec = body.grammar_spec()

    def params(loaded: LoadedModel) -> SamplingParams:
        grammar = None
        if spec is not None:  # compiled on a worker thread, once per schema (xgrammar caches it)
            grammar = compile_grammar(loaded.tokenizer, loaded.engine.vocab_size, loaded.stop_token_ids, spec)
        # Without a limit a completion may fill the context; the engine clips to what is left.
        return body.sampling_params(max_new_tokens or loaded.context_length, grammar)

    return await generation.start(request, model=body.model, prompts=prompts, params=params, n=body.n,
                                  limits=limits, prefer_resident=False,
                                  fields=Fields(model="model", prompt=prompt_param, dotted=True))


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
    messages = [m.as_dict() for m in body.messages]
    tools = body.tool_dicts() if body.tool_mode != "none" else None

    def render(model: LoadedModel) -> list[list[int]]:
        chat, template_tools = prompt_messages(model.tokenizer, messages, tools)
        return [render_chat(model.tokenizer, chat, tools=template_tools)]

    started = await submit(request, body, render, "messages", texts=texts_of(body.messages), messages=len(messages))
    cid, created = new_id("chatcmpl"), now()
    texts = TokenTexts(started.loaded.tokenizer) if body.logprobs else None
    calls = ToolCalls(body.tool_names, parallel=body.parallel_tool_calls is not False) if tools else None
    if body.stream:
        fmt = ChatChunks(cid, created, body.model, body.include_usage, texts, tool_calls=calls)
        return event_stream(stream_events(started, fmt))
    results = await generation.collect(request, started)
    choices = []
    for i, r in enumerate(results):
        content, found = calls.parse(r.text) if calls else (r.text, [])
        message = AssistantMessage(content=content, tool_calls=[c.wire() for c in found] or None)
        choices.append(ChatChoice(index=i, message=message, finish_reason="tool_calls" if found else r.finish_reason,
                                  logprobs=chat_logprobs(r.logprobs, texts) if texts else None))
    usage = started.usage(sum(r.usage.completion_tokens for r in results))
    return ChatCompletion(id=cid, created=created, model=body.model, choices=choices, usage=usage)


@router.post("/completions", response_model=None, responses={**documented(Completion), **BUSY_RESPONSES})
async def completions(request: Request, body: CompletionRequest) -> Completion | StreamingResponse:
    """Continue text prompts: a `text_completion`, or `text_completion` chunk events with `stream`."""
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
