"""What every `/v1` router shares: the route class that answers validation errors with 400 (the `openai` SDK
maps 400 to `BadRequestError`; the rest of the lab keeps 422), the model ids `/v1` knows, and submitting a
request model through the generation adapter (grammar compiled off the event loop).

    router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)
    await check_model(request.app, body.model)    # 404 model_not_found unless loaded or GET /v1/models lists it
    started = await submit(request, body, prompts, "prompt", texts=[...])    # any SamplingRequest
    started, tool_calls = await start_chat(request, chat_request)           # chat, with its tools
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from matelix import catalog
from matelix.inference.chat import render_chat
from matelix.inference.grammar import GrammarSpec, compile_grammar
from matelix.inference.loading import LoadedModel
from matelix.inference.sampling import SamplingParams
from matelix.server import generation
from matelix.server.errors import ApiError, describe_validation_errors, error_response, log_client_error
from matelix.server.generation import Generation, Limits
from matelix.server.inference_errors import Fields
from matelix.server.messages import texts_of
from matelix.server.openai_schema import ChatCompletionRequest, ModelCard, SamplingRequest
from matelix.server.tool_formats import call_format, marker_is_special
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
    """Local models under `models/` (id relative to home), finished runs (id = run folder name), runs' complete
    checkpoints (`run@checkpoint-N`, and `run@latest` while a run trains), and any other resident model (e.g. a
    hub model loaded with `/load_inference`); each says how it is served (`served_as`)."""
    # The registry is read on the event loop, which is the only place it changes; the disk scan runs on a
    # worker thread.
    registry = app.state.registry
    resident = registry.status()["loaded"]
    found = await asyncio.to_thread(catalog.list_models, app.state.settings)
    cards = [ModelCard(id=m["id"], created=m["created"], owned_by=OWNER, **registry.serving(m["id"])) for m in found]
    listed = {c.id for c in cards}
    for info in resident:
        if info["id"] not in listed:
            cards.append(ModelCard(id=info["id"], created=int(info["loaded_at"]), owned_by=OWNER,
                                   served_as=info["served_as"], resident=True, base_model=info["base_model"]))
    return cards


async def find_model(app, model_id: str) -> ModelCard:
    for card in await model_cards(app):
        if card.id == model_id:
            return card
    raise ApiError(404, f"The model '{model_id}' does not exist; GET /v1/models lists the available ones.",
                   param="model", code="model_not_found")


async def check_model(app, model_id: str) -> None:
    """404 model_not_found unless `model_id` is a loaded model's id or `GET /v1/models` lists it. A loaded model
    costs no scan of the disk: with 16 clients on SmolLM2 a scan per request (~16 ms of Python each, contending
    with the engine thread) delayed every first token by ~0.6 s."""
    if not app.state.registry.is_resident(model_id):
        await find_model(app, model_id)


async def submit(request: Request, body: SamplingRequest, prompts: Callable[[LoadedModel], list[list[int]]],
                 prompt_param: str, *, texts: list[tuple[str, str]], messages: int | None = None,
                 grammar: Callable[[LoadedModel], GrammarSpec | None] | None = None,
                 keep_special_tokens: Callable[[LoadedModel], bool] | None = None) -> Generation:
    """Check the model id, then queue `n` choices per prompt through the generation adapter. `grammar` gives
    the output's constraint for the loaded model (default: the body's own), `keep_special_tokens` whether
    the text keeps special tokens (see `start_chat`)."""
    await check_model(request.app, body.model)
    max_new_tokens = body.max_new_tokens
    limits = Limits(texts=texts, messages=messages, max_new_tokens=max_new_tokens, n=body.n,
                    stop=len(body.stop or ()))

    def params(loaded: LoadedModel) -> SamplingParams:
        spec = grammar(loaded) if grammar else body.grammar_spec()
        compiled = None
        if spec is not None:  # compiled on a worker thread, once per source (xgrammar caches it)
            compiled = compile_grammar(loaded.tokenizer, loaded.engine.vocab_size, loaded.stop_token_ids, spec)
        # Without a limit a completion may fill the context; the engine clips to what is left.
        params = body.sampling_params(max_new_tokens or loaded.context_length, compiled)
        return replace(params, skip_special_tokens=False) if keep_special_tokens and keep_special_tokens(loaded) \
            else params

    return await generation.start(request, model=body.model, prompts=prompts, params=params, n=body.n,
                                  limits=limits, prefer_resident=False, quantization=body.quantization,
                                  fields=Fields(model="model", prompt=prompt_param, dotted=True))


async def start_chat(request: Request, body: ChatCompletionRequest) -> tuple[Generation, ToolCalls | None]:
    """Queue a chat request (with its tools rendered when tool_choice is not none, and the tool grammar in
    the format the model's template declares); the ToolCalls reader for its answers, or None without tools."""
    messages = [m.as_dict() for m in body.messages]
    tools = body.tool_dicts() if body.tool_mode != "none" else None

    def render(model: LoadedModel) -> list[list[int]]:
        chat, template_tools = prompt_messages(model.tokenizer, messages, tools)
        return [render_chat(model.tokenizer, chat, tools=template_tools)]

    started = await submit(request, body, render, "messages", texts=texts_of(body.messages), messages=len(messages),
                           grammar=lambda loaded: body.grammar_spec(call_format(loaded.tokenizer)),
                           keep_special_tokens=lambda loaded: bool(tools) and marker_is_special(
                               loaded.tokenizer, call_format(loaded.tokenizer)))
    if not tools:
        return started, None
    reader = ToolCalls(body.tool_names, parallel=body.parallel_tool_calls is not False,
                       format=call_format(started.loaded.tokenizer))
    return started, reader
