"""Request ids, access log, and request body limits."""

import logging

from fastapi.testclient import TestClient

from matelix.server.app import create_app


def test_every_response_carries_a_request_id(client):
    a = client.get("/health").headers["x-request-id"]
    b = client.get("/no/such").headers["x-request-id"]
    assert a and b and a != b


def test_a_sane_client_request_id_is_echoed_and_a_hostile_one_replaced(client):
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    echoed = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert echoed != "bad id\twith spaces" and len(echoed) == 32


def test_unauthorized_responses_also_carry_a_request_id(make_settings):
    with TestClient(create_app(make_settings(api_key="k"))) as c:
        r = c.get("/hardware")
        assert r.status_code == 401 and r.headers["x-request-id"]


def test_one_access_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="matelix.access"):
        rid = client.get("/health").headers["x-request-id"]
    lines = [r.getMessage() for r in caplog.records if r.name == "matelix.access"]
    assert len(lines) == 1
    assert lines[0].startswith("GET /health 200 ") and lines[0].endswith(f"id={rid}")


def test_oversized_body_is_413_in_error_shape(make_settings):
    app = create_app(make_settings(max_request_mb=1))

    @app.post("/sink")
    async def sink(body: dict) -> dict:
        return {"n": len(body)}

    with TestClient(app) as c:
        big = b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}'
        r = c.post("/sink", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"
        r = c.post("/sink", content=big, headers={"content-type": "application/json", "accept-language": "de"})
        assert r.json()["error"]["message"] == "der Request-Body ist größer als die Grenze von 1 MiB"

        def chunks():
            yield b'{"x": "'
            for _ in range(20):
                yield b"a" * 65536
            yield b'"}'

        r = c.post("/sink", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/sink", json={"x": "small"}).json() == {"n": 1}


def test_error_messages_follow_the_request_language(client):
    german = {"Accept-Language": "de-DE,de;q=0.9"}
    assert client.get("/nowhere").json()["error"]["message"] == "no route for GET /nowhere"
    assert client.get("/nowhere", headers=german).json()["error"]["message"] == "keine Route für GET /nowhere"
    body = client.post("/datasets/validate", json={"dataset": "x.csv", "chunk_size": 1}, headers=german).json()
    assert body["error"]["message"] == "chunk_size: Muss mindestens 2 sein"
    assert body["error"]["code"] == "validation_error" and body["error"]["param"] == "chunk_size"
    # A validator's own message (settings that do not fit together), without pydantic's "Value error, ".
    r = client.post("/start", json={"model_dir": "models/x", "csv_path": "x.csv", "eval_steps": 10}, headers=german)
    assert r.status_code == 422, r.text
    assert "der Anteil für Evaluation ist 0" in r.json()["error"]["message"]
    assert "Value error" not in r.json()["error"]["message"]
    # The next request without the header is English again: the language is the request's, not the server's.
    assert client.get("/nowhere").json()["error"]["message"] == "no route for GET /nowhere"


def test_a_websocket_names_its_language_as_a_query_parameter(client):
    with client.websocket_connect("/ws/logs?run_id=a%00b&lang=de") as ws:
        event = ws.receive_json()
    assert event == {"type": "error", "message": "run_id: der Pfad enthält ein NUL-Byte"}
