"""Two simulated nodes vs one node: seconds per optimizer step of the same run, and whether the losses agree.

    python bench/multinode.py [--steps 6]

Builds the tiny demo model and a small chat dataset in two homes (one per "machine"), then trains the same
config twice: on one node with two processes (`torchrun --standalone`) and on two nodes with one process each
(two `matelix train CONFIG --node-rank K` launchers on 127.0.0.1, gloo). Time per step is taken from the
metrics' timestamps after the first step (start-up and the first step excluded). Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from matelix.demo.model import create_demo_model  # noqa: E402
from matelix.server.live import free_port  # noqa: E402
from matelix.settings import Settings  # noqa: E402
from matelix.training.config import TrainConfig  # noqa: E402
from matelix.training.jobs import RunManager  # noqa: E402


def make_home(root: Path, model: Path) -> Path:
    for sub in ("datasets", "training_outputs", "models"):
        (root / sub).mkdir(parents=True)
    shutil.copytree(model, root / "models" / "tiny")
    with (root / "datasets" / "chat.jsonl").open("w", encoding="utf-8") as fh:
        for t in range(64):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"Frage {t}?"},
                                              {"role": "assistant", "content": f"Antwort {t}: gut! " * (1 + t % 6)}]})
                     + "\n")
    return root


def step_times(home: Path) -> tuple[list[float], list[float]]:
    run = RunManager(Settings(home=home)).runs()[0]
    records = [m for m in run.read_metrics() if m.get("loss") is not None]
    times = [m["time"] for m in records]
    return [b - a for a, b in zip(times, times[1:], strict=False)], [m["loss"] for m in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="matelix-multinode-"))
    model = create_demo_model(work / "tiny", seed=0)
    config = {"model_dir": "models/tiny", "csv_path": "datasets/chat.jsonl", "chunk_size": 128,
              "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "max_steps": args.steps,
              "preview_steps": 0, "seed": 7, "nproc": 1}

    single = make_home(work / "single", model)
    runs = RunManager(Settings(home=single))
    started = time.time()
    run = runs.start(TrainConfig.model_validate({**config, "nproc": 2}))
    while runs.alive(run):
        time.sleep(0.5)
    single_wall = time.time() - started

    homes = [make_home(work / f"node{k}", model) for k in range(2)]
    two = {**config, "nnodes": 2, "master_addr": "127.0.0.1", "master_port": free_port()}
    (work / "two.json").write_text(json.dumps(two))
    started = time.time()
    # The two "machines" share this machine's cores: one thread each, as torchrun gives each of the single
    # node's two processes (on real machines every node has its own cores).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "matelix", "train", str(work / "two.json"), "--home", str(h),
                               "--node-rank", str(k)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
             for k, h in enumerate(homes)]
    codes = [p.wait() for p in procs]
    two_wall = time.time() - started

    one_steps, one_losses = step_times(single)
    two_steps, two_losses = step_times(homes[0])
    per_one = sum(one_steps) / len(one_steps)
    per_two = sum(two_steps) / len(two_steps)
    result = {"steps": args.steps, "cores": os.cpu_count(), "load_average": os.getloadavg()[0],
              "single_node_2_processes": {"s_per_step": round(per_one, 3), "wall_s": round(single_wall, 1)},
              "two_nodes_1_process_each": {"s_per_step": round(per_two, 3), "wall_s": round(two_wall, 1),
                                           "exit_codes": codes},
              "ratio_two_nodes_vs_single": round(per_two / per_one, 2),
              "max_loss_difference": max(abs(a - b) for a, b in zip(one_losses, two_losses, strict=True))}
    print(f"{'':28}{'s/step':>8}{'wall s':>9}")
    print(f"{'1 node x 2 processes':28}{per_one:8.2f}{single_wall:9.1f}")
    print(f"{'2 nodes x 1 process':28}{per_two:8.2f}{two_wall:9.1f}   ratio {per_two / per_one:.2f}x")
    print(json.dumps(result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
