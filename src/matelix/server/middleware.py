"""Pure ASGI middleware (no response buffering, so token streams stay live):

* `AccessMiddleware` — an `X-Request-ID` on every response (the client's own when it sent a sane one),
  one access-log line per request (method, path, status, duration, request id), and the request counted
  in the Prometheus metrics by its route *template* (so `/trainings/{run_id}` is one series).
* `BodyLimitMiddleware` — refuses request bodies over a size limit with 413 in the common error shape,
  by `Content-Length` up front or by counting a chunked body as it arrives.
* `LanguageMiddleware` — the language of the texts made for the request (`matelix.texts`): the one
  `Accept-Language` prefers, or for a WebSocket the `lang` query parameter (a browser cannot set its headers).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from urllib.parse import parse_qs

from matelix.server.errors import error_body
from matelix.server.metrics import Metrics
from matelix.texts import negotiate, speaking, tr

access_log = logging.getLogger("matelix.access")
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class AccessMiddleware:
    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if SANE_REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            access_log.info("%s %s %d %.1fms id=%s", scope["method"], scope["path"], status, seconds * 1000,
                            request_id)
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(scope["method"], template, status, seconds)


class BodyLimitMiddleware:
    """`limits` maps a path prefix to a byte limit; the longest matching prefix wins, `""` is the default."""

    def __init__(self, app, limits: dict[str, int]):
        self.app = app
        self.limits = sorted(limits.items(), key=lambda kv: len(kv[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        return next(limit for prefix, limit in self.limits if path.startswith(prefix))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(send, limit)
            return
        received = 0
        too_large = rejected = False

        async def counting_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Whatever the app makes of a cut-off body, the client is told the real reason.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal rejected
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start" and not rejected:
                rejected = True
                await self._reject(send, limit)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not rejected:
            await self._reject(send, limit)

    @staticmethod
    async def _reject(send, limit: int) -> None:
        body = json.dumps(error_body(tr("request body is larger than the limit of {mib} MiB", mib=limit // (1024 * 1024)),
                                     type="invalid_request_error", code="request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class LanguageMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers", [])).get(b"accept-language", b"").decode("latin-1")
        if scope["type"] == "websocket":
            header = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("lang", [header])[0]
        with speaking(negotiate(header)):
            await self.app(scope, receive, send)
