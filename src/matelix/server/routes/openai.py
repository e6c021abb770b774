"""OpenAI-compatible API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`.

A thin adapter over the inference engine. Invalid bodies are 400 here (not the lab's 422), because the
`openai` SDK maps 400 to `BadRequestError` and OpenAI-based tools expect it; `param` names the field.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from matelix import catalog
from matelix.inference.openai_schema import ModelCard, ModelList
from matelix.server.deps import SettingsDep
from matelix.server.errors import ApiError, describe_validation_errors, error_response
from matelix.settings import Settings

OWNER = "matelix"


class OpenAIRoute(APIRoute):
    """Renders body validation errors as 400 `invalid_request_error` with `param` set."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route_handler(request: Request):
            try:
                return await handler(request)
            except RequestValidationError as exc:
                message, param = describe_validation_errors(list(exc.errors()))
                code = "missing_required_parameter" if any(e.get("type") == "missing" for e in exc.errors()) \
                    else "invalid_value"
                return error_response(400, message.replace("Value error, ", ""), param=param, code=code)

        return route_handler


router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


def model_cards(settings: Settings) -> list[ModelCard]:
    """Local models under `models/` (id relative to home) and finished runs (id = run folder name)."""
    return [ModelCard(id=m["id"], created=m["created"], owned_by=OWNER) for m in catalog.list_models(settings)]


def find_model(settings: Settings, model_id: str) -> ModelCard:
    for card in model_cards(settings):
        if card.id == model_id:
            return card
    raise ApiError(404, f"The model '{model_id}' does not exist; GET /v1/models lists the available ones.",
                   param="model", code="model_not_found")


@router.get("/models")
def list_models(settings: SettingsDep) -> ModelList:
    """Models usable as `model`: local models and finished training runs."""
    return ModelList(data=model_cards(settings))


@router.get("/models/{model_id:path}")
def retrieve_model(model_id: str, settings: SettingsDep) -> ModelCard:
    """One model by id."""
    return find_model(settings, model_id)
