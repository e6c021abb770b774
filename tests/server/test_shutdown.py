"""SIGTERM to a real `matelix serve` process while a training run and a token stream are active: the server
stops accepting connections, lets the stream run for the grace period and then ends it with a final error
event and `[DONE]`, exits cleanly, and leaves the training worker running; a new server re-attaches to it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from tests.conftest import wait_for

from matelix import demo
from matelix.server.live import ServerProcess
from matelix.training.rundir import process_alive

pytestmark = pytest.mark.slow

FAULTS = Path(__file__).parent.parent / "faults"
KEY = "shutdown-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
GRACE_S = 2


def start_server(home: Path, log: Path, **env) -> tuple[subprocess.Popen, str]:
    server = ServerProcess.lab(home, log, env={"MATELIX_API_KEY": KEY, "MATELIX_SHUTDOWN_GRACE_S": str(GRACE_S),
                                               **env}).start(timeout=60)
    return server.proc, server.url


def refused(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=1)
    except httpx.TransportError:
        return True
    return False


def test_sigterm_ends_streams_with_a_final_event_and_leaves_training_to_the_next_server(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    for sub in ("datasets", "training_outputs", "models"):
        (home / sub).mkdir(parents=True)
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")
    shutil.copy(demo.demo_data_path("demo_chat.csv"), home / "datasets" / "chat.csv")
    log = tmp_path / "server.log"
    # Each decode step of the server's engine takes 30 ms more, so the stream outlives the grace period.
    server, url = start_server(home, log, PYTHONPATH=str(FAULTS), MATELIX_FAULT="slow-decode:30")
    worker_pid = None
    try:
        r = httpx.post(url + "/start", headers=HEADERS, json={
            "model_dir": "models/tiny-demo", "csv_path": "datasets/chat.csv", "chunk_size": 64, "max_steps": 100_000,
            "save_steps": 100_000, "logging_steps": 1, "preview_steps": 0, "per_device_train_batch_size": 1},
            timeout=120)  # /start's pre-check loads the tokenizer and the training libraries: seconds when busy
        assert r.status_code == 201, r.text
        run_id = r.json()["run_id"]
        wait_for(lambda: (httpx.get(url + "/status", headers=HEADERS).json()["step"] or 0) >= 1, "training steps")
        worker_pid = json.loads((home / "training_outputs" / run_id / "status.json").read_text())["pid"]

        body = {"model": "models/tiny-demo", "messages": [{"role": "user", "content": "Hallo"}], "max_tokens": 1500,
                "stream": True, "ignore_eos": True}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=HEADERS, timeout=60) as stream:
            lines = stream.iter_lines()
            first = [next(lines) for _ in range(4)]  # role chunk, blank line, first content chunk, blank line
            assert '"content"' in first[2]
            server.send_signal(signal.SIGTERM)
            wait_for(lambda: refused(url), "the server to stop accepting connections", timeout=GRACE_S)
            events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        final = json.loads(events[-2])
        assert final["error"]["message"].startswith("the server is shutting down")
        contents = [e for e in events[:-2] if '"content"' in e]
        assert contents, "the stream ran on during the grace period"
        # uvicorn re-raises the signal once its shutdown is complete, so the exit status is "killed by SIGTERM".
        assert server.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text()

        assert process_alive(worker_pid, None), "the training worker died with the server"
        restarted, url2 = start_server(home, log)
        try:
            status = httpx.get(url2 + "/status", headers=HEADERS).json()
            assert status["run_id"] == run_id and status["running"] and status["state"] == "running"
            step = status["step"]
            wait_for(lambda: httpx.get(url2 + "/status", headers=HEADERS).json()["step"] > step, "more steps")
            assert httpx.post(url2 + "/stop", headers=HEADERS).status_code == 200
            wait_for(lambda: (s := httpx.get(url2 + "/status", headers=HEADERS).json())["state"] == "stopped"
                     and not s["running"], "the graceful stop")
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
        if worker_pid and process_alive(worker_pid, None):
            os.killpg(worker_pid, signal.SIGKILL)
