"""One error shape for every response: `{"error": {"message", "type", "param", "code"}}` (OpenAI style)."""

from __future__ import annotations

import errno
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from matelix.texts import pydantic_message, tr

log = logging.getLogger("matelix.server")

TYPE_BY_STATUS = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in ((400, "Bad request"), (401, "Missing or wrong API key"),
                       (403, "Host or Origin not allowed (another site's page)"), (404, "Not found"),
                       (409, "Conflict"), (413, "Request body too large"),
                       (415, "A state-changing request whose body is not JSON and has no X-Requested-With header"),
                       (422, "Validation error"), (507, "The disk is full: nothing could be written"))
}
# Generation routes only: the server's generation queue is full (with a `Retry-After` header).
BUSY_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorResponse, "description": "Too many generations queued; retry after `Retry-After` s"}}


class ApiError(Exception):
    """An error a user can cause; rendered as a 4xx in the common error shape."""

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or error_type(status)
        self.param = param
        self.code = code
        self.headers = headers


# The HTTP status of each kind of refusal the training package raises (`training.preflight.RejectKind`).
STATUS_BY_KIND = {"invalid": 400, "not_found": 404, "conflict": 409}


def as_api_error(exc: Exception) -> ApiError:
    """A refused training request (`RunRejected`: `kind`, `message`, `param`, `code`) as the API answers it."""
    return ApiError(STATUS_BY_KIND[exc.kind], exc.message, param=exc.param, code=exc.code)


def log_client_error(request: Request, status: int, code: str | None, message: str) -> None:
    """Every 4xx leaves its reason in the server log (the access line only has the status)."""
    if 400 <= status < 500:
        log.info("%s %s -> %d %s: %s", request.method, request.url.path, status, code, message)


def error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return TYPE_BY_STATUS.get(status, "invalid_request_error")


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(status: int, message: str, *, type: str | None = None, param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = error_body(message, type=type or error_type(status), param=param, code=code)
    return JSONResponse(body, status_code=status, headers=headers)


def _field_name(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) if parts else str(loc[-1]) if loc else ""


def describe_validation_errors(errors: list[dict]) -> tuple[str, str | None]:
    """A readable message naming each offending field, and the first field as `param`."""
    messages, first = [], None
    for err in errors:
        field = _field_name(err.get("loc", ()))
        if err.get("type") == "extra_forbidden":
            text = tr("unknown field '{field}'", field=field)
        elif err.get("type") == "json_invalid":
            text = tr("malformed JSON body: {reason}", reason=err.get("ctx", {}).get("error", err.get("msg")))
            field = field if field and not field.isdigit() else "body"
        else:
            text = f"{field}: {pydantic_message(err)}" if field else pydantic_message(err)
        messages.append(text)
        first = first or field or None
    return "; ".join(messages), first


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method any route serves on `path` (Starlette's own 405 names only the first route's)."""
    methods: set[str] = set()
    for context in iter_route_contexts(app.routes):
        route_methods = getattr(context.original_route, "methods", None)
        if route_methods and context.path and compile_path(context.path)[0].match(path):
            methods |= route_methods
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        log_client_error(request, exc.status, exc.code, exc.message)
        return error_response(exc.status, exc.message, type=exc.type, param=exc.param, code=exc.code,
                              headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = tr("no route for {method} {path}", method=request.method, path=request.url.path)
        elif exc.status_code == 405:
            message = tr("method {method} is not allowed on {path}", method=request.method, path=request.url.path)
        else:
            message = str(exc.detail)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        log_client_error(request, exc.status_code, code, message)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request.app, request.url.path))}
        return error_response(exc.status_code, message, code=code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_validation_errors(list(exc.errors()))
        log_client_error(request, 422, "validation_error", message)
        return error_response(422, message, param=param, code="validation_error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal server error ({type(exc).__name__})", code="internal_error")

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # a full disk is the machine's state, not a bug
            log.error("%s %s: cannot write: %s", request.method, request.url.path, exc.strerror or exc)
            return error_response(507, tr("cannot write: {reason} (free some disk space and retry)",
                                          reason=exc.strerror or exc),
                                  code="storage_error")
        return await _unexpected(request, exc)
