"""Faults around training runs, with real worker processes of the tiny model: kill -9 during a checkpoint
save, a full disk during a save, torn writes, and corrupted run files."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import wait_for

from matelix import demo
from matelix.server.app import create_app
from matelix.settings import Settings
from matelix.training.config import TrainConfig
from matelix.training.jobs import RunManager
from matelix.training.rundir import RunDir, is_complete_checkpoint, write_json_atomic

FAULTS = Path(__file__).parent.parent / "faults"  # sitecustomize.py that injects faults into workers


@pytest.fixture
def lab(tmp_path, tiny_model_dir) -> Settings:
    for sub in ("datasets", "training_outputs", "models"):
        (tmp_path / sub).mkdir()
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    shutil.copy(demo.demo_data_path("demo_chat.csv"), tmp_path / "datasets" / "chat.csv")
    return Settings(home=tmp_path, stop_timeout_s=60)


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"model_dir": "models/tiny", "csv_path": "datasets/chat.csv", "chunk_size": 128,
                          "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1,
                          "preview_steps": 0, "max_steps": 6, "save_steps": 2, **overrides})


def final_status(jobs: RunManager, rundir: RunDir) -> dict:
    return wait_for(lambda: (s := jobs.settle(rundir)).get("state") not in ("queued", "starting", "running",
                                                                             "stopping") and s,
                    what=f"{rundir.run_id} to end")


def inject(monkeypatch, fault: str, marker: Path | None = None) -> None:
    # No empty entry: it would put the working directory (home, with its datasets/ folder) on sys.path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("MATELIX_FAULT", fault)
    if marker is not None:
        monkeypatch.setenv("MATELIX_FAULT_MARKER", str(marker))


def assert_files_intact(rundir: RunDir) -> None:
    json.loads(rundir.status_path.read_text())
    json.loads(rundir.config_path.read_text())
    for line in rundir.metrics_path.read_text().splitlines():
        json.loads(line)
    assert not list(rundir.path.glob(".*.tmp")), "a temp file was left behind"


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_save_resumes_from_the_last_complete_checkpoint(lab, monkeypatch, tmp_path):
    marker = tmp_path / "saving"
    inject(monkeypatch, "hang-in-trainer-state:4", marker)
    jobs = RunManager(lab)
    rundir = jobs.start(config())
    def saving() -> bool:
        assert jobs.settle(rundir).get("state") in ("queued", "starting", "running"), rundir.tail_log()
        return marker.exists()

    wait_for(saving, "the worker to be inside the save of checkpoint-4")
    os.killpg(int(rundir.read_status()["pid"]), signal.SIGKILL)
    for name in ("MATELIX_FAULT", "MATELIX_FAULT_MARKER", "PYTHONPATH"):
        monkeypatch.delenv(name, raising=False)

    status = final_status(jobs, rundir)
    assert status["state"] == "interrupted" and "without a final state" in status["error"]["message"]
    half = rundir.path / "checkpoint-4"
    assert (half / "optimizer.pt").is_file() and (half / "trainer_state.json").is_file()  # half written
    assert not is_complete_checkpoint(half)
    assert rundir.last_complete_checkpoint().name == "checkpoint-2"
    assert_files_intact(rundir)

    _, checkpoint = jobs.resume(rundir.run_id)
    assert checkpoint.name == "checkpoint-2"
    status = final_status(jobs, rundir)
    assert status["state"] == "completed" and status["step"] == 6, rundir.tail_log()
    assert "Resuming from checkpoint-2 (step 2)" in rundir.log_path.read_text()
    assert is_complete_checkpoint(half)  # saved again, completely, by the resumed run
    steps = [m["step"] for m in rundir.read_metrics() if "loss" in m]
    assert steps == list(range(1, 7))


@pytest.mark.slow
def test_a_full_disk_during_a_save_fails_the_run_with_a_clear_error_and_nothing_corrupt(lab, monkeypatch):
    inject(monkeypatch, "enospc-in-optimizer:4")
    jobs = RunManager(lab)
    rundir = jobs.start(config())
    status = final_status(jobs, rundir)
    assert status["state"] == "failed", rundir.tail_log()
    assert "No space left on device" in status["error"]["message"]
    assert not is_complete_checkpoint(rundir.path / "checkpoint-4")
    assert rundir.last_complete_checkpoint().name == "checkpoint-2"  # resumable once space is freed
    assert_files_intact(rundir)
    with TestClient(create_app(lab)) as client:
        view = client.get("/status", params={"run_id": rundir.run_id}).json()
        metrics = client.get("/metrics").text
    assert view["state"] == "failed" and "No space left on device" in view["error"]["message"]
    assert f'matelix_training_state{{run_id="{rundir.run_id}",state="failed"}} 1.0' in metrics
    assert f'matelix_training_step{{run_id="{rundir.run_id}"}} {float(view["step"])}' in metrics
    assert "matelix_training_running " in metrics and 'matelix_training_loss{run_id=' in metrics


def test_a_failing_status_write_leaves_the_previous_status_whole(tmp_path, monkeypatch):
    rundir = RunDir(tmp_path)
    rundir.update_status(state="running", step=3)

    def disk_full(*args, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(json, "dump", disk_full)
    with pytest.raises(OSError, match="No space left"):
        rundir.update_status(step=4)
    monkeypatch.undo()
    assert rundir.read_status()["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
    with pytest.raises(OSError):
        write_json_atomic(tmp_path / "missing-dir" / "x.json", {})


def test_a_torn_metrics_line_does_not_swallow_the_next_record(tmp_path):
    rundir = RunDir(tmp_path)
    rundir.append_metric({"step": 1, "loss": 2.0})
    with rundir.metrics_path.open("a") as fh:
        fh.write('{"step": 2, "lo')  # a write cut off by a full disk or a kill
    rundir.append_metric({"step": 3, "loss": 1.5})
    assert [m["step"] for m in rundir.read_metrics()] == [1, 3]


def test_corrupted_status_and_metrics_files_do_not_stop_the_server_listing_the_run(lab):
    jobs_dir = lab.outputs_dir / "tiny_2025-01-01_00-00-00"
    jobs_dir.mkdir()
    rundir = RunDir(jobs_dir)
    rundir.write_config(config())
    rundir.status_path.write_text('{"state": "running", "step": 4, "pid": 12')  # torn
    rundir.metrics_path.write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "lo\n\x00\x00garbage\n'
                                   '{"step": 3, "loss": 2.0}\n')
    broken = lab.outputs_dir / "other_2025-01-02_00-00-00"
    broken.mkdir()
    (broken / "train_config.json").write_text("{not json")
    (broken / "status.json").write_text("[]")
    with TestClient(create_app(lab)) as client:
        assert client.get("/health").status_code == 200
        listed = {t["run_id"]: t for t in client.get("/trainings").json()}
        assert set(listed) == {jobs_dir.name, broken.name}
        assert listed[broken.name]["config"] is None
        detail = client.get(f"/trainings/{jobs_dir.name}").json()
        assert [m["step"] for m in detail["metrics"]] == [1, 3]
        assert client.get("/status", params={"run_id": jobs_dir.name}).status_code == 200
        assert client.get("/metrics").status_code == 200
