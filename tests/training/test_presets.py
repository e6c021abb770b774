"""Presets in `matelix train --preset NAME`: the preset's fields, the config file's on top, and a clear
error (exit 2) for a missing preset or one that leaves the model open."""

from __future__ import annotations

from matelix.cli import main
from matelix.settings import Settings
from matelix.training.foreground import load_run_config
from matelix.training.presets import save_preset


def test_the_config_file_overrides_the_preset(home, tmp_path):
    save_preset(home, "lora-fast", {"train_mode": "lora", "learning_rate": 0.002, "model_dir": "models/a",
                                    "csv_path": "a.csv"})
    settings = Settings(home=home)
    alone = load_run_config(settings, None, "lora-fast")
    assert (alone.train_mode, alone.learning_rate, alone.model_dir) == ("lora", 0.002, "models/a")
    override = tmp_path / "c.yaml"
    override.write_text("model: models/b\nlearning_rate: 0.001\n", encoding="utf-8")
    both = load_run_config(settings, override, "lora-fast")
    assert (both.train_mode, both.learning_rate, both.model_dir, both.csv_path) == ("lora", 0.001, "models/b",
                                                                                  "a.csv")


def test_a_missing_or_incomplete_preset_exits_2_before_anything_starts(home, capsys):
    assert main(["train", "--preset", "absent", "--home", str(home)]) == 2
    assert "no preset 'absent'" in capsys.readouterr().err
    save_preset(home, "no-model", {"seed": 1})
    assert main(["train", "--preset", "no-model", "--home", str(home)]) == 2
    assert "model_dir" in capsys.readouterr().err
    assert main(["train", "--home", str(home)]) == 2
    assert list((home / "training_outputs").iterdir()) == []
