"""What every `/v1` router shares: the route class that answers validation errors with 400 (the `openai` SDK
maps 400 to `BadRequestError`; the rest of the lab keeps 422), the model ids `/v1` knows, and submitting a
request model through the generation adapter (grammar compiled off the event loop).

    router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)
    await find_model(request.app, body.model)     # 404 model_not_found unless GET /v1/models lists it
    started = await submit(request, body, prompts, "prompt", texts=[...])    # any SamplingRequest
    started, tool_calls = await start_chat(request, chat_request)           # chat, with its tools
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from matelix import catalog
from matelix.inference.chat import render_chat
from matelix.inference.grammar import compile_grammar
from matelix.inference.loading import LoadedModel
from matelix.inference.sampling import SamplingParams
from matelix.server import generation
from matelix.server.errors import ApiError, describe_validation_errors, error_response, log_client_error
from matelix.server.generation import Generation, Limits
from matelix.server.inference_errors import Fields
from matelix.server.messages import texts_of
from matelix.server.openai_schema import ChatCompletionRequest, ModelCard, SamplingRequest
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
                                  limits=limits, prefer_resident=False, quantization=body.quantization,
                                  fields=Fields(model="model", prompt=prompt_param, dotted=True))


async def start_chat(request: Request, body: ChatCompletionRequest) -> tuple[Generation, ToolCalls | None]:
    """Queue a chat request (with its tools rendered when tool_choice is not none); the ToolCalls reader
    for its answers, or None without tools."""
    messages = [m.as_dict() for m in body.messages]
    tools = body.tool_dicts() if body.tool_mode != "none" else None

    def render(model: LoadedModel) -> list[list[int]]:
        chat, template_tools = prompt_messages(model.tokenizer, messages, tools)
        return [render_chat(model.tokenizer, chat, tools=template_tools)]

    started = await submit(request, body, render, "messages", texts=texts_of(body.messages), messages=len(messages))
    return started, ToolCalls(body.tool_names, parallel=body.parallel_tool_calls is not False) if tools else None
