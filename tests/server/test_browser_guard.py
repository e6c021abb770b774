"""A web page on another site cannot drive the lab: Host allow-list (DNS rebinding), Origin check on
state-changing routes and the WebSocket, JSON-only bodies (or a custom header), and the security headers on
every page. The default configuration (loopback, no key) is the one attacked."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from matelix.server.app import create_app

LAB = "http://127.0.0.1:8002"
EVIL = "http://evil.example"
WS = "ws://127.0.0.1:8002/ws/logs"


@pytest.fixture
def lab(home, make_settings):
    """The app in its default setup, addressed as a browser on this machine addresses it."""
    (home / "datasets" / "demo_chat.csv").write_text("id,parent_id,Benutzer,Assistentin\n1,,Hi,Hallo\n")
    with TestClient(create_app(make_settings(allowed_hosts=[])), base_url=LAB) as c:
        yield c


def test_a_foreign_page_cannot_replace_a_dataset_by_a_multipart_upload(lab, home):
    before = (home / "datasets" / "demo_chat.csv").read_bytes()
    files = {"file": ("demo_chat.csv", b"text\npwned\n", "text/csv")}
    r = lab.post("/datasets/upload", files=files, data={"overwrite": "true"}, headers={"Origin": EVIL})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "origin_not_allowed"
    # Without an Origin (a privacy tool may strip it) a form body still needs the custom header.
    r = lab.post("/datasets/upload", files=files, data={"overwrite": "true"})
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"
    assert (home / "datasets" / "demo_chat.csv").read_bytes() == before


def test_the_dashboard_upload_from_its_own_origin_still_works(lab, home):
    files = {"file": ("demo_chat.csv", b"text\nnew\n", "text/csv")}
    r = lab.post("/datasets/upload", files=files, data={"overwrite": "true"},
                 headers={"Origin": LAB, "X-Requested-With": "matelix-dashboard"})
    assert r.status_code == 201, r.text
    assert (home / "datasets" / "demo_chat.csv").read_text() == "text\nnew\n"


@pytest.mark.parametrize("path", ["/load_inference", "/unload_inference", "/stop",
                                  "/trainings/some-run/resume", "/start"])
def test_text_plain_posts_are_refused_before_the_route_runs(lab, path):
    r = lab.post(path, content=b'{"model_dir": "models/x"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"
    r = lab.post(path, content=b'{"model_dir": "models/x"}', headers={"Content-Type": "application/json",
                                                                       "Origin": EVIL})
    assert r.status_code == 403


def test_a_body_without_a_content_type_is_refused_but_an_empty_post_is_not(lab):
    assert lab.post("/stop", content=b"{}", headers={"Content-Type": ""}).status_code == 415
    r = lab.post("/stop")  # curl -X POST: no body, no type, no Origin
    assert r.status_code == 409  # reached the route: no run is active
    assert lab.post("/stop", headers={"Origin": LAB}).status_code == 409


def test_json_from_the_own_origin_and_from_clients_without_origin_is_served(lab):
    body = {"dataset": "demo_chat.csv"}
    assert lab.post("/datasets/validate", json=body).status_code == 200
    assert lab.post("/datasets/validate", json=body, headers={"Origin": LAB}).status_code == 200
    assert lab.post("/datasets/validate", json=body, headers={"Origin": "null"}).status_code == 403
    assert lab.post("/datasets/validate", json=body,
                    headers={"Origin": "http://127.0.0.1:9999"}).status_code == 403


def test_configured_cors_origins_may_post(home, make_settings):
    settings = make_settings(allowed_hosts=[], cors_origins=["http://tool.example:3000"])
    (home / "datasets" / "t.csv").write_text("text\nhallo\n")
    with TestClient(create_app(settings), base_url=LAB) as c:
        r = c.post("/datasets/validate", json={"dataset": "t.csv"}, headers={"Origin": "http://tool.example:3000"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://tool.example:3000"
        assert c.post("/datasets/validate", json={"dataset": "t.csv"},
                      headers={"Origin": EVIL}).status_code == 403


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_dns_rebinding_a_foreign_name_is_refused_on_every_route(lab, method):
    # The attacker's page is same-origin with itself: Origin and Host both name its domain.
    for path in ("/status", "/trainings", "/available_datasets", "/datasets/demo_chat.csv/preview", "/stop"):
        r = lab.request(method, path, headers={"Host": "rebind.evil.example:8002",
                                               "Origin": "http://rebind.evil.example:8002"})
        if method == "GET" or path == "/stop":
            assert r.status_code == 403, path
            assert r.json()["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["127.0.0.1:8002", "localhost:8002", "LOCALHOST", "[::1]:8002", "192.168.1.20",
                                  "app.localhost:8002"])
def test_loopback_names_and_ip_addresses_are_allowed_hosts(lab, host):
    assert lab.get("/status", headers={"Host": host}).status_code == 200


def test_configured_host_names_and_the_wildcard(home, make_settings):
    with TestClient(create_app(make_settings(allowed_hosts=["lab.internal"])), base_url=LAB) as c:
        assert c.get("/status", headers={"Host": "lab.internal:8002"}).status_code == 200
        assert c.get("/status", headers={"Host": "other.internal"}).status_code == 403
    with TestClient(create_app(make_settings(allowed_hosts=["*"])), base_url=LAB) as c:
        assert c.get("/status", headers={"Host": "other.internal"}).status_code == 200


def test_the_websocket_refuses_a_foreign_origin_and_a_foreign_host(lab):
    with pytest.raises(WebSocketDisconnect) as refused:
        with lab.websocket_connect(WS, headers={"Origin": EVIL}):
            pass
    assert refused.value.code == 1008
    with pytest.raises(WebSocketDisconnect):
        with lab.websocket_connect(WS, headers={"Host": "rebind.evil.example:8002",
                                                        "Origin": "http://rebind.evil.example:8002"}):
            pass
    with lab.websocket_connect(WS, headers={"Origin": LAB}) as ws:
        ws.close()


def test_every_page_and_answer_carries_csp_and_anti_framing_headers(lab):
    for path in ("/", "/ui/app.js", "/status", "/no/such/route", "/docs", "/redoc", "/openapi.json"):
        r = lab.get(path)
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert "script-src 'self';" in r.headers["content-security-policy"], path
        assert r.headers["x-frame-options"] == "DENY", path
        assert r.headers["x-content-type-options"] == "nosniff", path
    refused = lab.post("/stop", headers={"Origin": EVIL})
    assert refused.headers["x-frame-options"] == "DENY"


def test_the_api_docs_load_their_scripts_from_the_lab_not_a_cdn(lab):
    for page in ("/docs", "/redoc"):
        html = lab.get(page).text
        assert "cdn." not in html and "https://" not in html, page
        assert "<script>" not in html, page  # no inline script: the CSP forbids it
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css",
                  "/docs/assets/redoc.standalone.js", "/ui/docs/swagger-init.js"):
        r = lab.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset


def test_docs_assets_are_public_when_a_key_is_set(home, make_settings):
    with TestClient(create_app(make_settings(allowed_hosts=[], api_key="k")), base_url=LAB) as c:
        assert c.get("/docs").status_code == 200
        assert c.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
        assert c.get("/status").status_code == 401
