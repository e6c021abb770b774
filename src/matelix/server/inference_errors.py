"""Inference failures as HTTP errors, in one place for every generation route (`/chat*` and `/v1/*`).

    try:
        loaded = await registry.acquire(ref)
        ...
    except INFERENCE_ERRORS as exc:
        raise to_api_error(exc, fields) from exc      # fields: the request's names for model, prompt, ...
    ...
    if result.finish_reason == "error":
        raise generation_error(result.error_kind, result.error)

Refusals before anything runs: unknown model → 404 `model_not_found`; path outside the allowed folders →
400 `path_refused`; prompt longer than the context → 400 `context_length_exceeded`; invalid messages or
sampling values → 400 `invalid_value`; a request over a configured limit → 400 `limit_exceeded`; a folder
that does not load → 400 `model_load_failed`; a model unloaded between acquire and submit → 503
`model_unloaded` (retry); more generations than the server may queue → 429 `rate_limit_exceeded` with
`Retry-After`.

Failures while generating, by the `error_kind` the engine puts on the final event: `"failed"` (the step or
the request's sampler raised) → 500 `generation_failed`; `"closed"` (model unloaded, server shutting down)
→ 503 `model_unloaded` with `Retry-After`. Streams send the same error body as their last event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from matelix.inference.admission import Overloaded, RequestLimitExceeded
from matelix.inference.chat import InvalidMessages
from matelix.inference.engine import EngineClosed, PromptTooLong, RequestRejected
from matelix.inference.grammar import GrammarRejected
from matelix.inference.registry import ModelLoadFailed, ModelNotFound, ModelRefused
from matelix.paths import PathRefused
from matelix.server.errors import ApiError

INFERENCE_ERRORS = (PathRefused, ModelNotFound, ModelRefused, ModelLoadFailed, RequestRejected, InvalidMessages,
                    GrammarRejected, EngineClosed, Overloaded)


@dataclass(frozen=True)
class Fields:
    """A route's names for the inputs the engine and registry speak of (they know no request fields)."""

    model: str = "model"
    prompt: str = "prompt"
    max_tokens: str = "max_tokens"
    dotted: bool = False
    """Name message fields as pydantic does (`messages.0.content`), as the route's validation errors do."""

    def name(self, param: str | None) -> str | None:
        param = {"prompt": self.prompt, "model_dir": self.model, "max_new_tokens": self.max_tokens}.get(
            param or "", param)
        return re.sub(r"\[(\d+)\]", r".\1", param) if self.dotted and param else param


def to_api_error(exc: Exception, fields: Fields = Fields(model="model_dir")) -> ApiError:
    """The 4xx/503 for one of INFERENCE_ERRORS, naming the request's own field."""
    model = fields.model
    if isinstance(exc, ModelNotFound):
        return ApiError(404, str(exc), param=model, code="model_not_found")
    if isinstance(exc, PathRefused):
        return ApiError(400, f"{model}: {exc}", param=model, code="path_refused")
    if isinstance(exc, ModelRefused):
        return ApiError(400, str(exc), param=fields.name(exc.param), code="invalid_value")
    if isinstance(exc, ModelLoadFailed):
        return ApiError(400, str(exc), param=model, code="model_load_failed")
    if isinstance(exc, RequestLimitExceeded):
        return ApiError(400, str(exc), param=exc.param, code="limit_exceeded")
    if isinstance(exc, Overloaded):
        return ApiError(429, str(exc), type="rate_limit_error", code="rate_limit_exceeded",
                        headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, PromptTooLong):
        return ApiError(400, str(exc), param=fields.name(exc.param), code="context_length_exceeded")
    if isinstance(exc, RequestRejected | InvalidMessages | GrammarRejected):
        return ApiError(400, str(exc), param=fields.name(exc.param), code="invalid_value")
    if isinstance(exc, EngineClosed):
        return unloaded(str(exc))
    raise TypeError(f"not an inference error: {exc!r}") from exc


def unloaded(message: str) -> ApiError:
    return ApiError(503, f"{message}; retry the request", code="model_unloaded", headers={"Retry-After": "1"})


def generation_error(kind: str | None, message: str | None) -> ApiError:
    """The error for a generation that ended with finish_reason "error", by the engine's `error_kind`."""
    if kind == "closed":
        return unloaded(message or "model unloaded")
    return ApiError(500, message or "generation failed", code="generation_failed")
