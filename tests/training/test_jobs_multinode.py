"""Multi-node training simulated on one machine: two homes (one per "machine"), each with its own
`matelix train` launcher and torchrun process tree, meeting on the loopback address (gloo, CPU).

The slow tests train the tiny demo model for a few steps; the machine may have only 2 cores, so every run is
short and a node has one process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from tests.conftest import free_port, wait_for

from matelix.settings import Settings
from matelix.training.config import TrainConfig
from matelix.training.jobs import RunManager, worker_command
from matelix.training.rundir import RunDir

RUN_TIMEOUT_S = 600


def two_node_config(**overrides) -> dict:
    return {"model_dir": "models/tiny", "csv_path": "datasets/chat.jsonl", "chunk_size": 128,
            "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "max_steps": 3,
            "preview_steps": 0, "logging_steps": 1, "seed": 7, "nnodes": 2, "nproc": 1,
            "master_addr": "127.0.0.1", "master_port": free_port(), "node_timeout_s": 60, **overrides}


def test_multi_node_worker_command_is_torchrun_with_the_node_rank(tmp_path):
    config = TrainConfig.model_validate(two_node_config(node_rank=1, nproc=2, master_port=29555,
                                                        node_timeout_s=90))
    cmd = worker_command(RunDir(tmp_path), config)
    assert cmd == [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--node-rank=1",
                   "--master-addr=127.0.0.1", "--master-port=29555", "--rdzv-backend=static",
                   "--rdzv-conf=timeout=90", "--max-restarts=0", "--nproc-per-node=2",
                   "-m", "matelix.training.worker", str(tmp_path)]


def test_single_node_commands_are_unchanged(tmp_path):
    one = TrainConfig.model_validate({"model_dir": "m", "csv_path": "d"})
    two = one.model_copy(update={"nproc": 2})
    assert worker_command(RunDir(tmp_path), one) == [sys.executable, "-m", "matelix.training.worker", str(tmp_path)]
    assert worker_command(RunDir(tmp_path), two)[3:6] == ["--standalone", "--nproc-per-node=2", "-m"]


@pytest.mark.parametrize("fields, message", [
    ({"nnodes": 2}, "needs master_addr"),
    ({"nnodes": 2, "master_addr": "10.0.0.1", "node_rank": 2}, "node_rank 2 must be below nnodes"),
    ({"nnodes": 2, "master_addr": "host; rm -rf /"}, "master_addr"),
])
def test_multi_node_settings_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.model_validate({"model_dir": "m", "csv_path": "d", **fields})


# -- two simulated machines ----------------------------------------------------------------------------


def make_home(root: Path, tiny_model_dir: Path) -> Path:
    for sub in ("datasets", "training_outputs", "models"):
        (root / sub).mkdir(parents=True)
    shutil.copytree(tiny_model_dir, root / "models" / "tiny")
    with (root / "datasets" / "chat.jsonl").open("w", encoding="utf-8") as fh:
        for t in range(24):
            answer = f"Antwort {t}: gut, danke! " * (1 + t % 4)
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"Frage {t}?"},
                                              {"role": "assistant", "content": answer}]}) + "\n")
    return root


@pytest.fixture
def machines(tmp_path, tiny_model_dir) -> tuple[Path, Path]:
    return make_home(tmp_path / "node0", tiny_model_dir), make_home(tmp_path / "node1", tiny_model_dir)


def launch(home: Path, config_file: Path, node_rank: int) -> subprocess.Popen:
    """`matelix train CONFIG --node-rank K` in its own process group, output to home/launcher.out."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = (home / "launcher.out").open("wb")
    return subprocess.Popen([sys.executable, "-m", "matelix", "train", str(config_file), "--home", str(home),
                             "--node-rank", str(node_rank)], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def only_run(home: Path) -> RunDir:
    runs = RunManager(Settings(home=home)).runs()
    assert len(runs) == 1, runs
    return runs[0]


def step_of(home: Path) -> int:
    """The step node `home`'s run has reached (0 before it exists)."""
    runs = RunManager(Settings(home=home)).runs()
    return (runs[0].read_status().get("step") or 0) if runs else 0


def losses(rundir: RunDir) -> list[float]:
    return [m["loss"] for m in rundir.read_metrics() if m.get("loss") is not None]


def finish(proc: subprocess.Popen, home: Path) -> int:
    try:
        return proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        print((home / "launcher.out").read_text(errors="replace")[-4000:])


def start_two_nodes(machines, tmp_path, **overrides) -> tuple[subprocess.Popen, subprocess.Popen]:
    config_file = tmp_path / "two-nodes.json"
    config_file.write_text(json.dumps(two_node_config(**overrides)))
    return launch(machines[0], config_file, 0), launch(machines[1], config_file, 1)


@pytest.mark.slow
def test_two_nodes_train_like_one_node_with_two_processes(machines, tmp_path):
    node0, node1 = start_two_nodes(machines, tmp_path)
    assert finish(node0, machines[0]) == 0
    assert finish(node1, machines[1]) == 0
    run0, run1 = only_run(machines[0]), only_run(machines[1])
    assert run1.run_id.startswith("tiny_node1_")
    assert run0.read_status()["state"] == run1.read_status()["state"] == "completed"
    assert run0.has_model() and not run1.has_model()  # node 0 keeps the final model, node 1 only its record
    assert "joining node 0 at 127.0.0.1:" in (machines[1] / "launcher.out").read_text()

    # The same run on one machine with two processes (torchrun --standalone), same seed and data.
    single_home = machines[0].parent / "single"
    shutil.copytree(machines[0] / "models", single_home / "models")
    shutil.copytree(machines[0] / "datasets", single_home / "datasets")
    jobs = RunManager(Settings(home=single_home))
    fields = {k: v for k, v in two_node_config().items() if k not in ("nnodes", "master_addr", "master_port")}
    single = jobs.start(TrainConfig.model_validate({**fields, "nproc": 2}))
    wait_for(lambda: not jobs.alive(single), "the single-node run", timeout=RUN_TIMEOUT_S)
    assert jobs.settle(single)["state"] == "completed", single.tail_log(40)

    expected = losses(single)
    assert len(expected) == 3
    assert losses(run0) == pytest.approx(expected, rel=1e-4)
    assert losses(run1) == pytest.approx(expected, rel=1e-4)  # node 1 mirrors the curve in its own record


@pytest.mark.slow
def test_stopping_node_0_stops_the_other_node(machines, tmp_path):
    node0, node1 = start_two_nodes(machines, tmp_path, max_steps=200)
    wait_for(lambda: step_of(machines[0]) >= 1, "node 0's first step", timeout=RUN_TIMEOUT_S)
    RunManager(Settings(home=machines[0])).stop(only_run(machines[0]).run_id)
    assert finish(node0, machines[0]) == 0
    assert finish(node1, machines[1]) == 0
    status0, status1 = only_run(machines[0]).read_status(), only_run(machines[1]).read_status()
    assert status0["state"] == status1["state"] == "stopped"
    assert status0["step"] == status1["step"] < 200  # every rank left the loop at the same step


@pytest.mark.slow
def test_a_lost_node_fails_the_run_with_a_clear_message(machines, tmp_path):
    node0, node1 = start_two_nodes(machines, tmp_path, max_steps=200, node_timeout_s=30)
    wait_for(lambda: step_of(machines[1]) >= 1, "node 1's first step", timeout=RUN_TIMEOUT_S)
    # Machine 1 disappears: its launcher, torchrun and the workers (each in a session of its own) are killed.
    launcher = psutil.Process(json.loads(only_run(machines[1]).worker_path.read_text())["pid"])
    for proc in [psutil.Process(node1.pid), launcher, *launcher.children(recursive=True)]:
        proc.kill()
    assert finish(node0, machines[0]) == 1
    status = only_run(machines[0]).read_status()
    assert status["state"] == "failed", status
    assert "another process or node of the run was lost" in status["error"]["message"]


@pytest.mark.slow
def test_killing_a_torchrun_run_ends_its_workers_too(machines):
    """torchrun starts each worker in a session of its own, so killing the launcher's process group alone
    would leave them training; the kill reaches them."""
    runs = RunManager(Settings(home=machines[0]))
    fields = {k: v for k, v in two_node_config().items() if k not in ("nnodes", "master_addr", "master_port")}
    run = runs.start(TrainConfig.model_validate({**fields, "nproc": 2, "max_steps": 200}))
    wait_for(lambda: step_of(machines[0]) >= 1, "the first step", timeout=RUN_TIMEOUT_S)
    launcher = psutil.Process(json.loads(run.worker_path.read_text())["pid"])
    workers = launcher.children(recursive=True)
    assert len(workers) == 2
    runs.kill(run.run_id)
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    assert run.read_status()["state"] == "killed"
