"""Every error shares one shape; validation errors name the field."""

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from matelix.server.errors import ApiError, install_error_handlers


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(gt=0)


def make_client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    def echo(body: Body) -> dict:
        return body.model_dump()

    @app.get("/conflict")
    def conflict() -> None:
        raise ApiError(409, "a run is already active", code="run_active")

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    return TestClient(app, raise_server_exceptions=False)


def test_invalid_value_names_the_field():
    r = make_client().post("/echo", json={"learning_rate": -1})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["param"] == "learning_rate" and "learning_rate" in err["message"]


def test_unknown_field_is_named():
    r = make_client().post("/echo", json={"learning_rate": 1, "bogus": 2})
    assert r.status_code == 422
    assert "unknown field 'bogus'" in r.json()["error"]["message"]


def test_malformed_json_is_422_with_message():
    r = make_client().post("/echo", content=b'{"learning_rate": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "malformed JSON" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "body"


def test_api_error_keeps_status_and_code():
    r = make_client().get("/conflict")
    assert r.status_code == 409
    assert r.json()["error"] == {"message": "a run is already active", "type": "invalid_request_error",
                                 "param": None, "code": "run_active"}


def test_unexpected_exception_is_500_without_traceback():
    r = make_client().get("/boom")
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error"
    assert "secret internals" not in r.text and "Traceback" not in r.text


def test_405_names_every_allowed_method_of_the_path():
    from fastapi import FastAPI

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/things/{name}")
    def get_thing(name: str) -> dict:
        return {}

    @app.delete("/things/{name}")
    def delete_thing(name: str) -> dict:
        return {}

    r = TestClient(app).put("/things/a")
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, GET"


def test_every_kind_of_refused_run_has_its_http_status():
    from typing import get_args

    from matelix.server.errors import STATUS_BY_KIND, as_api_error
    from matelix.training.preflight import RejectKind, RunRejected

    assert set(STATUS_BY_KIND) == set(get_args(RejectKind))
    error = as_api_error(RunRejected("conflict", "run 'x' is running", param="run_id", code="run_active"))
    assert (error.status, error.type, error.param, error.code) == (409, "invalid_request_error", "run_id",
                                                                    "run_active")
