"""API-key check for every route except a small public allowlist (pure ASGI, so streams stay unbuffered).

Keys are accepted as `Authorization: Bearer <key>`, `X-API-Key: <key>`, and for WebSockets also as the
`?api_key=` query parameter. Comparison is constant-time.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qs

from matelix.server.errors import error_body

PUBLIC_PATHS = frozenset({"/", "/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
                          "/favicon.ico"})
PUBLIC_PREFIXES = ("/ui/", "/static/", "/docs/assets/")

UNAUTHORIZED = json.dumps(error_body(
    "Missing or invalid API key. Send 'Authorization: Bearer <key>' (or 'X-API-Key: <key>').",
    type="invalid_request_error", code="invalid_api_key")).encode()


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def presented_key(scope: dict) -> str | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if "x-api-key" in headers:
        return headers["x-api-key"].strip()
    if scope["type"] == "websocket":
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key")
        return values[0] if values else None
    return None


def key_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class ApiKeyMiddleware:
    """Rejects requests without the configured key: 401 JSON for HTTP, close code 1008 for WebSockets."""

    def __init__(self, app, api_key: str | None):
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope, receive, send):
        if (scope["type"] not in ("http", "websocket") or not self.api_key or is_public(scope["path"])
                or key_matches(presented_key(scope), self.api_key)):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "invalid api key"})
            return
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
            (b"content-length", str(len(UNAUTHORIZED)).encode())]})
        await send({"type": "http.response.body", "body": UNAUTHORIZED})
