"""The `matelix` command line."""

import subprocess
import sys

import pytest

from matelix.cli import main


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "matelix", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("serve", "demo-model", "demo-assets", "import-gguf"):
        assert cmd in out.stdout
    train = subprocess.run([sys.executable, "-m", "matelix", "train", "--help"], capture_output=True, text=True,
                           check=True).stdout
    for option in ("--learning-rate", "--ngrams.top-k", "--no-packing", "--model-dir", "--preset"):
        assert option in train


def test_serve_refuses_public_host_without_key(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("MATELIX_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--home", str(tmp_path)]) == 2
    assert "without an API key" in capsys.readouterr().err


def test_demo_assets_copies_datasets_and_builds_model(tmp_path):
    assert main(["demo-assets", "--home", str(tmp_path), "--no-real-model"]) == 0
    assert (tmp_path / "datasets" / "demo_chat.csv").stat().st_size > 1000
    assert (tmp_path / "datasets" / "demo_text.csv").stat().st_size > 1000
    assert (tmp_path / "models" / "tiny-demo" / "config.json").is_file()
    mtime = (tmp_path / "models" / "tiny-demo" / "config.json").stat().st_mtime
    assert main(["demo-assets", "--home", str(tmp_path), "--no-real-model"]) == 0  # idempotent: nothing rebuilt
    assert (tmp_path / "models" / "tiny-demo" / "config.json").stat().st_mtime == mtime


def test_train_options_come_from_the_config_fields_and_override_file_and_preset(home, tmp_path):
    from matelix.cli import build_parser, model_options
    from matelix.settings import Settings
    from matelix.training.foreground import load_run_config
    from matelix.training.presets import save_preset

    save_preset(home, "p", {"train_mode": "lora", "seed": 3, "ngram_min_count": 2})
    config_file = tmp_path / "c.yaml"
    config_file.write_text("model: models/a\ncsv_path: a.csv\nlearning_rate: 0.002\nmax_steps: 9\n")
    args = build_parser().parse_args(["train", str(config_file), "--preset", "p", "--learning-rate", "1e-4",
                                      "--ngrams.top-k", "7", "--no-packing", "--max-steps", "none",
                                      "--lora-target-modules", "q_proj,v_proj"])
    config = load_run_config(Settings(home=home), args.config, args.preset, model_options(args))
    assert (config.learning_rate, config.packing, config.max_steps) == (1e-4, False, None)
    assert config.lora_target_modules == ["q_proj", "v_proj"]
    assert (config.ngrams.top_k, config.ngrams.min_count) == (7, 2)  # nested options merge one by one
    assert (config.train_mode, config.seed, config.model_dir) == ("lora", 3, "models/a")
    assert model_options(build_parser().parse_args(["train", str(config_file)])) == {}


def test_train_options_are_checked_as_the_config_checks_them(home, capsys):
    assert main(["train", "--home", str(home), "--model-dir", "models/a", "--csv-path", "a.csv",
                 "--learning-rate", "lots"]) == 2
    assert "learning_rate" in capsys.readouterr().err
    assert list((home / "training_outputs").iterdir()) == []
    with pytest.raises(SystemExit) as exc:
        main(["train", "--home", str(home), "--learnin-rate", "1"])
    assert exc.value.code == 2
