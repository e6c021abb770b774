"""API key: required on every non-public route when set, constant-time compared, OpenAI-style 401."""

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from matelix.server.app import create_app


@pytest.fixture
def keyed(make_settings):
    with TestClient(create_app(make_settings(api_key="s3cret"))) as c:
        yield c


def test_missing_key_gets_openai_style_401(keyed):
    r = keyed.get("/hardware")
    assert r.status_code == 401
    assert r.json() == {"error": {"message": r.json()["error"]["message"], "type": "invalid_request_error",
                                  "param": None, "code": "invalid_api_key"}}
    assert r.headers["www-authenticate"] == "Bearer"


def test_wrong_key_is_401(keyed):
    assert keyed.get("/hardware", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert keyed.get("/hardware", headers={"X-API-Key": "s3cret2"}).status_code == 401


def test_bearer_and_x_api_key_are_accepted(keyed):
    assert keyed.get("/hardware", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert keyed.get("/hardware", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_public_paths_need_no_key(keyed):
    for path in ("/health", "/", "/openapi.json", "/docs"):
        assert keyed.get(path).status_code == 200, path


def test_unknown_routes_also_need_the_key(keyed):
    assert keyed.get("/no/such").status_code == 401
    assert keyed.get("/no/such", headers={"X-API-Key": "s3cret"}).status_code == 404


def test_no_key_configured_means_open(client):
    assert client.get("/hardware").status_code == 200


def test_websocket_without_key_is_refused(make_settings):
    from fastapi import WebSocket

    app = create_app(make_settings(api_key="s3cret"))

    @app.websocket("/ws/echo")
    async def echo(ws: WebSocket):
        await ws.accept()
        await ws.send_text("hi")
        await ws.close()

    with TestClient(app) as c:
        with pytest.raises(WebSocketDisconnect) as exc:
            with c.websocket_connect("/ws/echo") as ws:
                ws.receive_text()
        assert exc.value.code == 1008
        with c.websocket_connect("/ws/echo?api_key=s3cret") as ws:
            assert ws.receive_text() == "hi"
        with c.websocket_connect("/ws/echo", headers={"Authorization": "Bearer s3cret"}) as ws:
            assert ws.receive_text() == "hi"
