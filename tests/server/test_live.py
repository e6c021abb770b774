"""The one helper that starts a real lab server for tests, benchmarks and scripts."""

from __future__ import annotations

import sys

import httpx
import pytest

from matelix.server.live import ServerDidNotStart, ServerProcess, ThreadedServer, free_port


def test_threaded_server_answers_until_it_is_left(settings):
    with ThreadedServer(settings) as server:
        assert httpx.get(server.url + "/health").status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/health", timeout=2)


def test_lab_process_serves_and_stops_on_sigterm(home, tmp_path):
    server = ServerProcess.lab(home, tmp_path / "server.log").start()
    try:
        assert httpx.get(server.url + "/health").json()["status"] == "ok"
    finally:
        status = server.stop()
    assert status is not None and server.proc.poll() is not None


def test_a_server_that_exits_while_starting_is_reported_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    argv = [sys.executable, "-c", "import sys; print('no such option: --bogus'); sys.exit(2)"]
    with pytest.raises(ServerDidNotStart, match="no such option: --bogus"):
        ServerProcess(argv, port=free_port(), log=log).start(timeout=30)
