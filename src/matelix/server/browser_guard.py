"""What a web page on another site may do with the lab: nothing (pure ASGI, so streams stay unbuffered).

A browser sends requests to `127.0.0.1` for any page the user visits, with or without an API key set. The
lab stops them the way Jupyter, vLLM and Ollama do:

* `Host` allow-list — the request must name the lab by an IP address, `localhost`, the machine's own host
  name, the bound host or a configured name (`MATELIX_ALLOWED_HOSTS`). A DNS-rebinding page reaches the lab
  under its own domain name, so its requests are refused (403 `host_not_allowed`).
* `Origin` check — a state-changing request (POST, PUT, PATCH, DELETE) or a WebSocket that carries an
  `Origin` must come from the lab's own origin or a configured CORS origin (403 `origin_not_allowed`;
  WebSocket: closed before it opens). Clients that are not browsers send no `Origin` and are not affected.
* JSON bodies — a state-changing request with a body that is not JSON (form, multipart, text, or no
  content type) needs an `X-Requested-With` header (415 `unsupported_media_type` otherwise). Browsers send
  neither a JSON body nor a custom header to another origin without a CORS preflight, which the lab refuses
  for unconfigured origins; the dashboard sends the header with its uploads.

`SecurityHeadersMiddleware` adds a strict Content-Security-Policy, anti-framing and `nosniff` headers to
every response.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from urllib.parse import urlsplit

from starlette.routing import Match

from matelix.server.errors import error_body

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})
ALL_INTERFACES = frozenset({"", "0.0.0.0", "::", "[::]"})
DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
CUSTOM_HEADER = b"x-requested-with"

# The dashboard loads only its own files and talks only to its own origin ('self' covers ws:// of the same
# host in current browsers); nothing may frame it.
DASHBOARD_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                 "frame-ancestors 'none'")
# Swagger UI and ReDoc (served from the package) set inline styles, and ReDoc runs a worker from a blob.
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self' data:; worker-src 'self' blob:; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})


def _hostname(host: str) -> str:
    """`host` of a Host header value `host[:port]` (IPv6 in brackets), lower-case, without a trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def allowed_host_names(bound_host: str, configured: list[str]) -> frozenset[str]:
    names = set(LOOPBACK_NAMES) | {_hostname(h) for h in configured}
    if bound_host not in ALL_INTERFACES:
        names.add(_hostname(bound_host))
    try:
        names.add(socket.gethostname().lower())
    except OSError:
        pass
    return frozenset(names)


def _origin_key(scheme: str, netloc: str) -> str:
    """`host:port` with the scheme's default port filled in, for comparing an Origin with a Host."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        has_port = "]:" in netloc
    else:
        has_port = ":" in netloc
    return netloc if has_port else f"{netloc}:{DEFAULT_PORTS.get(scheme, '80')}"


class BrowserGuardMiddleware:
    """Host allow-list, Origin check and JSON-only bodies (see the module docstring)."""

    def __init__(self, app, *, bound_host: str, allowed_hosts: list[str], cors_origins: list[str], routes=()):
        self.app = app
        self.routes = routes  # a body is judged only where a route takes it (elsewhere: the router's 404/405)
        self.any_host = "*" in allowed_hosts
        self.host_names = allowed_host_names(bound_host, [h for h in allowed_hosts if h != "*"])
        self.origins = frozenset(o.rstrip("/").lower() for o in cors_origins)

    def host_allowed(self, host: str) -> bool:
        name = _hostname(host)
        return (self.any_host or _is_ip(name) or name in self.host_names or name.endswith(".localhost"))

    def origin_allowed(self, origin: str, host: str, scheme: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins or "*" in self.origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # `null` (sandboxed frames, file: pages) and anything odd
        own_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        return _origin_key(parts.scheme, parts.netloc) == _origin_key(own_scheme, host)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = headers.get(b"host", b"").decode("latin-1")
        refusal = None
        if host and not self.host_allowed(host):
            refusal = (403, "host_not_allowed",
                       f"Host {_hostname(host)!r} is not allowed; add it to MATELIX_ALLOWED_HOSTS to reach the "
                       "lab under that name")
        elif scope["type"] == "websocket" or scope["method"] in STATE_CHANGING:
            origin = headers.get(b"origin")
            if origin is not None and not self.origin_allowed(origin.decode("latin-1"), host, scope["scheme"]):
                refusal = (403, "origin_not_allowed",
                           f"requests from origin {origin.decode('latin-1')!r} are not allowed; add it to "
                           "MATELIX_CORS_ORIGINS to allow it")
            elif scope["type"] == "http" and not self._json_or_marked(headers) and self._routed(scope):
                refusal = (415, "unsupported_media_type",
                           "send the body as JSON (Content-Type: application/json); a form or file upload needs "
                           "an 'X-Requested-With' header")
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[1]})
        else:
            await _send_error(send, *refusal)

    def _routed(self, scope) -> bool:
        return not self.routes or any(route.matches(scope)[0] == Match.FULL for route in self.routes)

    @staticmethod
    def _json_or_marked(headers: dict[bytes, bytes]) -> bool:
        if headers.get(CUSTOM_HEADER):
            return True
        content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if not content_type:  # no body at all (POST /stop) is fine; a body without a type is not
            length = headers.get(b"content-length", b"0").strip()
            return b"transfer-encoding" not in headers and (not length.isdigit() or int(length) == 0)
        return content_type == b"application/json" or (content_type.startswith(b"application/")
                                                       and content_type.endswith(b"+json"))


async def _send_error(send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(message, type="invalid_request_error", code=code)).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    """A Content-Security-Policy (stricter for the dashboard than for the API docs), `X-Frame-Options: DENY`,
    `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` on every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (DOCS_CSP if scope["path"] in DOCS_PATHS else DASHBOARD_CSP).encode()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(b"content-security-policy", csp), (b"x-frame-options", b"DENY"),
                         (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
