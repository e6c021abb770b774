"""Settling runs happens in one place: the server's supervisor task (plus start/stop/resume/kill/delete).
Reads — `/status`, `/trainings`, Prometheus scrapes, WebSocket ticks — never write status.json or kill a
worker; repeated stops start no thread and keep the first stop's grace period; train_config.json is read
once per change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest
from fastapi.testclient import TestClient
from tests.conftest import wait_for

from matelix.server.app import create_app
from matelix.training.rundir import RunDir, process_alive, process_start_time

RUN = "tiny_2026-01-01_00-00-00"


def _run_folder(home, pid: int, started: float | None) -> RunDir:
    run = home / "training_outputs" / RUN
    run.mkdir()
    (run / "train_config.json").write_text(json.dumps({"model_dir": "models/tiny", "csv_path": "datasets/c.csv"}))
    (run / "status.json").write_text(json.dumps({"run_id": RUN, "state": "running", "pid": pid, "pid_started": started,
                                                 "created_at": 1.0, "session_started_at": 1.0, "step": 3}))
    return RunDir(run)


@pytest.fixture
def live_worker(home):
    """A run whose status names a real, live process (a `sleep`) as its worker."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield _run_folder(home, proc.pid, process_start_time(proc.pid)), proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _timers() -> int:
    return sum(isinstance(t, threading.Timer) and t.is_alive() for t in threading.enumerate())


def test_repeated_stops_start_no_thread_and_keep_the_first_stop_time(make_settings, live_worker):
    rundir, _ = live_worker
    before = _timers()
    with TestClient(create_app(make_settings(stop_timeout_s=600))) as client:
        first = client.post("/stop")
        assert first.status_code == 200 and first.json()["state"] == "stopping"
        asked_at = rundir.stop_path.stat().st_mtime_ns - 10**9
        os.utime(rundir.stop_path, ns=(asked_at, asked_at))  # the first stop, a second ago
        for _ in range(300):
            assert client.post("/stop").status_code == 200
        assert _timers() == before
        assert rundir.stop_path.stat().st_mtime_ns == asked_at


def test_reads_show_a_dead_run_settled_without_writing_it(make_settings, home):
    app = create_app(make_settings())  # no lifespan: no supervisor task
    rundir = _run_folder(home, _dead_pid(), None)
    written = rundir.status_path.read_bytes()
    client = TestClient(app)
    for path in ("/status", "/trainings", f"/trainings/{RUN}", "/metrics", "/livepreview", "/logs"):
        assert client.get(path).status_code == 200, path
    assert client.get("/status").json()["state"] == "interrupted"
    with client.websocket_connect("/ws/logs") as ws:
        assert ws.receive_json()["state"] == "interrupted"
    assert rundir.status_path.read_bytes() == written


def test_the_supervisor_writes_the_end_of_a_dead_run_without_any_request(make_settings, home):
    with TestClient(create_app(make_settings())):
        rundir = _run_folder(home, _dead_pid(), None)
        settled = wait_for(lambda: rundir.read_status().get("state") == "interrupted" and rundir.read_status(),
                           "the supervisor", timeout=30)
    assert "without a final state" in settled["error"]["message"]


def test_the_supervisor_kills_a_worker_that_overran_its_stop_timeout(make_settings, live_worker):
    rundir, proc = live_worker
    with TestClient(create_app(make_settings(stop_timeout_s=0.5))) as client:
        assert client.post("/stop").status_code == 200
        wait_for(lambda: rundir.read_status().get("state") == "killed", "the overdue kill", timeout=30)
    proc.wait(timeout=10)  # (the in-process server may have reaped it already)
    assert not process_alive(proc.pid, None)
    assert "was killed" in rundir.read_status()["error"]["message"]


def test_train_config_is_read_once_per_change(make_settings, home, monkeypatch):
    rundir = _run_folder(home, _dead_pid(), None)
    rundir.status_path.write_text(json.dumps({"run_id": RUN, "state": "completed"}))
    reads = []
    original = RunDir.read_config
    monkeypatch.setattr(RunDir, "read_config", lambda self: reads.append(1) or original(self))
    client = TestClient(create_app(make_settings()))
    for _ in range(5):
        assert client.get("/status").json()["config"]["model_dir"] == "models/tiny"
    assert len(reads) == 1
    rundir.config_path.write_text(json.dumps({"model_dir": "models/other", "csv_path": "datasets/c.csv"}))
    assert client.get("/status").json()["config"]["model_dir"] == "models/other"


def test_a_run_being_spawned_is_not_settled_but_one_never_spawned_is(make_settings, home):
    from matelix.training.jobs import SPAWN_GRACE_S, RunManager

    rundir = _run_folder(home, _dead_pid(), None)
    jobs = RunManager(make_settings())
    rundir.status_path.write_text(json.dumps({"run_id": RUN, "state": "queued"}))
    rundir.update_status(state="queued")  # what start/resume write just before the worker's pid is known
    assert jobs.settle(rundir)["state"] == "queued"
    rundir.status_path.write_text(json.dumps({"run_id": RUN, "state": "queued",
                                              "updated_at": rundir.read_status()["updated_at"] - SPAWN_GRACE_S - 1}))
    assert jobs.settle(rundir)["state"] == "interrupted"


def test_a_server_whose_own_worker_ended_follows_the_worker_another_server_spawned(make_settings, live_worker):
    """Two servers on one home: the first spawned the run's worker, which died; the second resumed the run.
    The first must follow the new worker, not settle the run from its stale child handle."""
    from matelix.training.jobs import RunManager

    rundir, proc = live_worker
    jobs = RunManager(make_settings())
    ended = subprocess.Popen(["true"])
    ended.wait()
    jobs._procs[RUN] = ended
    assert jobs.alive(rundir) is True
    assert jobs.settle(rundir)["state"] == "running"
