"""The time estimate before Start: the optimizer steps of a run as the Trainer counts them, cheaper settings
only for a long run, and a real measurement of a few steps of the tiny model."""

import json
import subprocess
import sys

from matelix.training.config import TrainConfig
from matelix.training.estimate import LONG_RUN_S, optimizer_steps, spread, suggestions

BASE = {"model_dir": "models/tiny-demo", "csv_path": "demo_chat.csv"}


def test_optimizer_steps_follow_batch_accumulation_epochs_and_max_steps():
    config = TrainConfig(**BASE, per_device_train_batch_size=2, gradient_accumulation_steps=4, num_train_epochs=3)
    assert optimizer_steps(100, config) == 3 * 13  # 50 batches -> 13 optimizer steps per epoch
    assert optimizer_steps(1, config) == 3
    assert optimizer_steps(100, config.model_copy(update={"max_steps": 7})) == 7


def test_rows_for_the_measurement_are_spread_over_the_whole_dataset():
    assert spread(list(range(100)), 4) == [0, 25, 50, 75]
    assert spread([1, 2], 5) == [1, 2, 1, 2, 1]


def test_only_a_long_run_gets_cheaper_settings():
    config = TrainConfig(**BASE, chunk_size=2048, num_train_epochs=3)
    assert suggestions(config, LONG_RUN_S - 1) == []
    assert suggestions(config, LONG_RUN_S) == [{"code": "shorter_sequences", "chunk_size": 1024}, {"code": "lora"},
                                               {"code": "fewer_epochs", "num_train_epochs": 1}]
    lora = TrainConfig(**BASE, chunk_size=256, train_mode="lora", max_steps=10_000)
    assert suggestions(lora, LONG_RUN_S * 2) == []


def test_a_few_real_steps_are_measured_in_a_child_process(home, tiny_model_dir):
    import shutil

    from matelix.demo import demo_data_path

    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")
    shutil.copyfile(demo_data_path("demo_chat.csv"), home / "datasets" / "demo_chat.csv")
    config = TrainConfig(**BASE, max_steps=40, chunk_size=64, gradient_accumulation_steps=1)
    done = subprocess.run([sys.executable, "-m", "matelix.training.estimate", str(home)],
                          input=config.model_dump_json(), capture_output=True, text=True, timeout=600, cwd=home)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["steps"] == 40 and answer["measured_steps"] == 2 and answer["device"] == "cpu"
    assert answer["seconds_per_step"] > 0 and answer["rows"] > 0 and answer["tokens"] > 0
    assert answer["seconds"] >= 40 * answer["seconds_per_step"]
    assert list((home / "training_outputs").iterdir()) == []  # nothing written where runs live
