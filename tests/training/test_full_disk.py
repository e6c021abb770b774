"""A real full file system under a real training run: the home lives on a small tmpfs, a run of the tiny
model trains, then the disk is filled. The worker fails with the reason recorded (`No space left on device`,
written from the run's space reserve), every read route keeps answering, and an upload is 507.
Needs the right to mount a tmpfs (root); skipped with the reason otherwise."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest
from fastapi.testclient import TestClient
from tests.conftest import lab_home, wait_for

from matelix.server.app import create_app
from matelix.settings import Settings
from matelix.training.rundir import process_alive

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        for status in mount.glob("training_outputs/*/status.json"):
            pid = __import__("json").loads(status.read_text() or "{}").get("pid")
            if pid and process_alive(pid, None):
                os.killpg(int(pid), signal.SIGKILL)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path) -> None:
    """Write until the file system refuses (ENOSPC)."""
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0" * 512)
        except OSError:
            pass


def test_a_full_disk_fails_the_run_with_its_reason_and_reads_keep_answering(small_disk, tiny_model_dir):
    home = lab_home(small_disk, tiny_model_dir)
    rows = "".join(f"{i},,,Frage {i}?,,Antwort {i} " + "gut " * 20 + "\n" for i in range(1, 41))
    (home / "datasets" / "chat.csv").write_text("id,parent_id,system,Benutzer,Kontext,Assistentin\n" + rows)
    with TestClient(create_app(Settings(home=home))) as client:
        started = client.post("/start", json={
            "model_dir": "models/tiny-demo", "csv_path": "datasets/chat.csv", "chunk_size": 128, "max_steps": 5000,
            "per_device_train_batch_size": 2, "logging_steps": 1, "save_steps": 5000, "preview_steps": 0})
        assert started.status_code == 201, started.text
        run_id = started.json()["run_id"]
        wait_for(lambda: (client.get("/status").json().get("step") or 0) >= 2, "two training steps")
        _fill(home / "filler.bin")
        final = wait_for(lambda: (s := client.get(f"/status?run_id={run_id}").json())["state"] not in (
            "queued", "starting", "running", "stopping") and s, "the run to end", timeout=300)
        assert final["state"] == "failed", final
        assert "No space left on device" in final["error"]["message"]
        for path in ("/status", "/trainings", f"/trainings/{run_id}", f"/logs?run_id={run_id}", "/livepreview",
                     "/available_datasets", "/metrics"):
            assert client.get(path).status_code == 200, path
        _fill(home / "filler-2.bin")  # what the run's reserve gave back is taken again
        r = client.post("/datasets/upload", headers={"X-Requested-With": "test"},
                        files={"file": ("more.csv", b"text\n" + b"x" * 200_000, "text/csv")})
        assert r.status_code == 507 and r.json()["error"]["code"] == "storage_error"
        assert not list((home / "datasets").glob(".upload-*"))
        (home / "filler.bin").unlink()
        (home / "filler-2.bin").unlink()
        shutil.rmtree(home / "models")
