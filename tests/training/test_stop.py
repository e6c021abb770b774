"""POST /stop on a live worker: repeated stops keep one pending stop timer per run and do not restart the
grace period (300 stops once started 300 timer threads and pushed the kill back with each one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest
from fastapi.testclient import TestClient

from matelix.server.app import create_app
from matelix.training.rundir import process_start_time


@pytest.fixture
def live_worker(home):
    """A run folder whose status names a real, live process (a `sleep`) as its worker."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    run = home / "training_outputs" / "tiny_2026-01-01_00-00-00"
    run.mkdir()
    (run / "train_config.json").write_text(json.dumps({"model_dir": "models/tiny", "csv_path": "datasets/c.csv"}))
    (run / "status.json").write_text(json.dumps({"run_id": run.name, "state": "running", "pid": proc.pid,
                                                 "pid_started": process_start_time(proc.pid), "created_at": 1.0}))
    yield run
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _stop_timers() -> int:
    return sum(isinstance(t, threading.Timer) and t.is_alive() for t in threading.enumerate())


def test_repeated_stops_keep_one_timer_and_the_first_stop_time(make_settings, live_worker):
    before = _stop_timers()
    with TestClient(create_app(make_settings(stop_timeout_s=600))) as client:
        first = client.post("/stop")
        assert first.status_code == 200 and first.json()["state"] == "stopping"
        stop_file = live_worker / "stop_requested"
        asked_at = stop_file.stat().st_mtime_ns
        os.utime(stop_file, ns=(asked_at - 10**9, asked_at - 10**9))  # the first stop, a second ago
        for _ in range(300):
            assert client.post("/stop").status_code == 200
        assert _stop_timers() - before == 1
        assert stop_file.stat().st_mtime_ns == asked_at - 10**9
