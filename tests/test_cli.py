"""The `matelix` command line."""

import subprocess
import sys

from matelix.cli import main


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "matelix", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("serve", "demo-model", "demo-assets", "import-gguf"):
        assert cmd in out.stdout


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
