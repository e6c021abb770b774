"""A lab home with two finished runs made from the tiny demo model: a full fine-tune (the model itself,
weights nudged so it differs from its base) and a LoRA adapter run (random non-zero LoRA weights)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from tests.conftest import lab_home

from matelix.settings import Settings
from matelix.training.config import TrainConfig
from matelix.training.rundir import RunDir

FULL_RUN = "tiny-demo_2026-01-01_00-00-00"
ADAPTER_RUN = "tiny-demo_2026-01-02_00-00-00"


def finished_run(home: Path, run_id: str, model_files: Path, train_mode: str) -> RunDir:
    """A run folder as a completed training leaves it: config, status and the final model."""
    rundir = RunDir(home / "training_outputs" / run_id)
    shutil.copytree(model_files, rundir.path)
    rundir.write_config(TrainConfig(model_dir="models/tiny-demo", csv_path="datasets/demo_chat.csv",
                                    train_mode=train_mode, merge_lora_on_save=train_mode != "lora"))
    rundir.update_status(state="completed", model="models/tiny-demo", train_mode=train_mode, created_at=1.0)
    return rundir


@pytest.fixture(scope="module")
def export_lab(tmp_path_factory, tiny_model_dir, tiny_adapter_dir) -> Settings:
    home = lab_home(tmp_path_factory.mktemp("export-home"), tiny_model_dir)
    finished_run(home, FULL_RUN, tiny_model_dir, "full")
    finished_run(home, ADAPTER_RUN, tiny_adapter_dir, "lora")
    return Settings(home=home)


@pytest.fixture
def one_thread():
    """One torch thread: tiny models on a shared machine run ~10x slower when threads oversubscribe the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
