"""The one generation adapter (`server.generation`): the same failure gets the same status on `/chat` and
`/v1`, a client that leaves a non-streaming request is a cancellation (499), never a 500, and every 4xx
leaves its code and message in the server log."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from tests.conftest import LiveServer, lab_home, wait_for

from matelix.server.inference_errors import generation_error
from matelix.settings import Settings

DEMO = "models/tiny-demo"


def test_error_kinds_map_to_one_status_for_every_route():
    closed, failed = generation_error("closed", "model unloaded"), generation_error("failed", "generation failed: X")
    assert (closed.status, closed.code, closed.headers) == (503, "model_unloaded", {"Retry-After": "1"})
    assert (failed.status, failed.code) == (500, "generation_failed")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    home = lab_home(tmp_path_factory.mktemp("generation-home"), tiny_model_dir)
    with LiveServer(Settings(home=home, offline=True)) as live:
        yield live


def statuses(server, route: str) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics").text
    found = re.findall(rf'^matelix_http_requests_total{{method="POST",route="{re.escape(route)}",status="(\d+)"}} (\S+)$',
                       text, re.M)
    return {status: float(value) for status, value in found}


@pytest.mark.parametrize(("route", "body"), [
    ("/v1/completions", {"model": DEMO, "prompt": "Der Wal", "max_tokens": 1500, "ignore_eos": True}),
    ("/chat", {"model_dir": DEMO, "messages": [{"role": "user", "content": "Hallo"}], "max_new_tokens": 1500,
               "temperature": 0}),
])
def test_a_client_leaving_a_non_streaming_request_cancels_it_and_is_no_server_error(server, route, body):
    status = httpx.get(server.url + "/inference_status").json()
    cancelled_before = sum(m["cancelled_requests"] for m in status["loaded"])
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + route, json=body, timeout=httpx.Timeout(60, read=1.5))

    def cancelled() -> bool:
        loaded = httpx.get(server.url + "/inference_status").json()["loaded"]
        return sum(m["cancelled_requests"] for m in loaded) == cancelled_before + 1
    wait_for(cancelled, "the generation to be cancelled", timeout=60)
    counts = wait_for(lambda: statuses(server, route).get("499") and statuses(server, route), "the 499 to be counted",
                      timeout=30)
    assert "500" not in counts


def test_every_client_error_is_logged_with_code_and_message(client, caplog):
    with caplog.at_level(logging.INFO, logger="matelix.server"):
        client.post("/v1/chat/completions", json={"model": DEMO, "messages": [{"role": "user", "content": "x"}],
                                                  "temperature": 9})
        client.post("/chat", json={"messages": [{"role": "user", "content": "x"}], "model_dir": "no-such-model"})
    lines = [r.getMessage() for r in caplog.records if r.name == "matelix.server"]
    assert any("/v1/chat/completions -> 400 invalid_value: temperature" in line for line in lines), lines
    assert any("/chat -> 404 model_not_found" in line and "no-such-model" in line for line in lines), lines
