"""Map inference-side exceptions (registry, engine, chat rendering) to `ApiError`s, for every inference route.

    try:
        loaded = await registry.acquire(ref)
        handles = registry.admission.submit(loaded, [loaded.render_chat(messages)], params)
    except INFERENCE_ERRORS as exc:
        raise to_api_error(exc, model_param="model") from exc

Statuses: unknown model → 404 `model_not_found`; path outside the allowed folders → 400 `path_refused`;
prompt longer than the context → 400 `context_length_exceeded`; invalid messages or sampling values → 400
`invalid_value`; a request over a configured limit → 400 `limit_exceeded`; a folder that does not load → 400
`model_load_failed`; a model unloaded between acquire and submit → 503 `model_unloaded` (retry); more
generations than the server may queue → 429 `rate_limit_exceeded` with `Retry-After`.
"""

from __future__ import annotations

from matelix.inference.admission import Overloaded, RequestLimitExceeded
from matelix.inference.chat import InvalidMessages
from matelix.inference.engine import EngineClosed, PromptTooLong, RequestRejected
from matelix.inference.registry import ModelLoadFailed, ModelNotFound, ModelRefused
from matelix.paths import PathRefused
from matelix.server.errors import ApiError

INFERENCE_ERRORS = (PathRefused, ModelNotFound, ModelRefused, ModelLoadFailed, RequestRejected, InvalidMessages,
                    EngineClosed, Overloaded)


def to_api_error(exc: Exception, *, model_param: str = "model_dir") -> ApiError:
    """The 4xx/503 for one of INFERENCE_ERRORS; `model_param` is the request field naming the model."""
    if isinstance(exc, ModelNotFound):
        return ApiError(404, str(exc), param=model_param, code="model_not_found")
    if isinstance(exc, PathRefused):
        return ApiError(400, f"{model_param}: {exc}", param=model_param, code="path_refused")
    if isinstance(exc, ModelRefused):
        param = model_param if exc.param == "model_dir" else exc.param
        return ApiError(400, str(exc), param=param, code="invalid_value")
    if isinstance(exc, ModelLoadFailed):
        return ApiError(400, str(exc), param=model_param, code="model_load_failed")
    if isinstance(exc, RequestLimitExceeded):
        return ApiError(400, str(exc), param=exc.param, code="limit_exceeded")
    if isinstance(exc, Overloaded):
        return ApiError(429, str(exc), type="rate_limit_error", code="rate_limit_exceeded",
                        headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, PromptTooLong):
        return ApiError(400, str(exc), param=exc.param, code="context_length_exceeded")
    if isinstance(exc, RequestRejected | InvalidMessages):
        return ApiError(400, str(exc), param=exc.param, code="invalid_value")
    if isinstance(exc, EngineClosed):
        return ApiError(503, f"{exc}; retry the request", code="model_unloaded", headers={"Retry-After": "1"})
    raise TypeError(f"not an inference error: {exc!r}") from exc
