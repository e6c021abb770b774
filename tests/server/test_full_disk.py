"""A full disk under the server: read routes keep answering, writes are 507 `storage_error`, and a run's
final status still gets written from its space reserve. (A real full file system with a real training
worker: tests/training/test_full_disk.py.)"""

from __future__ import annotations

import errno
import json
import subprocess

import pytest
from fastapi.testclient import TestClient

from matelix.server.app import create_app
from matelix.training import rundir as rundir_module
from matelix.training.rundir import RunDir

RUN = "tiny_2026-01-01_00-00-00"


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def dead_run(home):
    """A run whose status says `running` while its worker is gone (killed while the disk was full)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    run = home / "training_outputs" / RUN
    run.mkdir()
    (run / "train_config.json").write_text(json.dumps({"model_dir": "models/tiny", "csv_path": "datasets/c.csv"}))
    (run / "status.json").write_text(json.dumps({"run_id": RUN, "state": "running", "pid": proc.pid,
                                                 "pid_started": 1.0, "created_at": 1.0, "step": 3}))
    (run / "training.log").write_text("step 3\n")
    return run


def test_read_routes_answer_while_nothing_can_be_written(make_settings, dead_run, monkeypatch):
    monkeypatch.setattr(rundir_module, "write_json_atomic", _disk_full)
    with TestClient(create_app(make_settings())) as client:
        for path in ("/status", "/trainings", f"/trainings/{RUN}", "/logs", "/livepreview", "/metrics",
                     f"/status?run_id={RUN}"):
            r = client.get(path)
            assert r.status_code == 200, (path, r.text)
        status = client.get("/status").json()
        assert status["state"] == "interrupted" and status["running"] is False
        assert json.loads((dead_run / "status.json").read_text())["state"] == "running"  # not written: no space
    monkeypatch.undo()
    with TestClient(create_app(make_settings())) as client:  # space again: the settled state is written
        assert client.get("/status").json()["state"] == "interrupted"
    assert json.loads((dead_run / "status.json").read_text())["state"] == "interrupted"


def test_an_upload_to_a_full_disk_is_507_storage_error_and_leaves_nothing(client, home, monkeypatch):
    from matelix.server.routes import datasets

    monkeypatch.setattr(datasets.tempfile, "mkstemp", _disk_full)
    r = client.post("/datasets/upload", headers={"X-Requested-With": "test"},
                    files={"file": ("d.csv", b"text\nhallo\n", "text/csv")})
    assert r.status_code == 507
    assert r.json()["error"]["code"] == "storage_error" and "No space left" in r.json()["error"]["message"]
    assert list((home / "datasets").iterdir()) == []


def test_the_space_reserve_lets_the_final_status_be_written_once(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    run.update_status(state="running")
    run.reserve_space()
    write = rundir_module.write_json_atomic

    def full_while_reserved(path, data):
        if run.reserve_path.exists():  # the disk is full until the reserve is given up
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data)

    monkeypatch.setattr(rundir_module, "write_json_atomic", full_while_reserved)
    with pytest.raises(OSError):  # a progress update is not worth the reserve
        run.update_status(step=7)
    assert run.reserve_path.exists()
    run.update_status(state="failed", error={"message": "OSError: [Errno 28] No space left on device"})
    assert run.read_status()["state"] == "failed" and not run.reserve_path.exists()
    monkeypatch.setattr(rundir_module, "write_json_atomic", _disk_full)
    with pytest.raises(OSError):  # nothing left to give: the error surfaces
        run.update_status(state="interrupted")
