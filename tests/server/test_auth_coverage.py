"""Every route of the app needs the API key, except an explicit public allowlist.

Routes are enumerated from the app's own route table, so a route added later is covered automatically.
"""

import re

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount
from starlette.websockets import WebSocketDisconnect

from matelix.server.app import create_app

KEY = "cover-me"
PUBLIC = {"/health", "/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
PUBLIC_MOUNTS = {"/ui", "/static"}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def app_routes(app):
    """(kind, method, path) for every route, with included routers flattened."""
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path
        if isinstance(route, APIRoute):
            for method in sorted(route.methods - {"HEAD"}):
                yield "http", method, path
        elif isinstance(route, APIWebSocketRoute):
            yield "ws", "GET", path
        elif isinstance(route, Mount):
            yield "mount", "GET", path
        elif path in PUBLIC:
            yield "public", "GET", path


@pytest.fixture
def keyed_app(make_settings):
    return create_app(make_settings(api_key=KEY))


def test_route_table_is_not_trivially_small(keyed_app):
    protected = [r for r in app_routes(keyed_app) if r[0] in ("http", "ws") and r[2] not in PUBLIC]
    assert len(protected) >= 5


def test_every_http_route_needs_the_key(keyed_app):
    with TestClient(keyed_app, raise_server_exceptions=False) as c:
        for kind, method, path in app_routes(keyed_app):
            if kind != "http" or path in PUBLIC:
                continue
            url = concrete(path)
            denied = c.request(method, url)
            assert denied.status_code == 401, f"{method} {path} answered {denied.status_code} without a key"
            assert denied.json()["error"]["code"] == "invalid_api_key"
            allowed = c.request(method, url, headers={"Authorization": f"Bearer {KEY}"})
            assert allowed.status_code != 401, f"{method} {path} refused the right key"
            assert allowed.status_code < 500, f"{method} {path} answered {allowed.status_code}"


def test_every_websocket_route_needs_the_key(keyed_app):
    ws_paths = [path for kind, _, path in app_routes(keyed_app) if kind == "ws"]
    with TestClient(keyed_app) as c:
        for path in ws_paths:
            with pytest.raises(WebSocketDisconnect) as exc:
                with c.websocket_connect(concrete(path)) as ws:
                    ws.receive_text()
            assert exc.value.code == 1008, path
            with c.websocket_connect(concrete(path) + f"?api_key={KEY}") as ws:
                ws.close()


def test_public_allowlist_is_exactly_what_is_open(keyed_app):
    with TestClient(keyed_app) as c:
        for kind, _, path in app_routes(keyed_app):
            if kind == "public" or path in PUBLIC:
                assert c.get(path).status_code == 200, path
        for mount in PUBLIC_MOUNTS:
            r = c.get(f"{mount}/definitely-missing.js")
            assert r.status_code == 404, mount
