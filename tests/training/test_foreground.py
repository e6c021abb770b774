"""`matelix train`: a bad config file is refused before anything starts; Ctrl-C stops the run gracefully."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import threading
import time

import pytest

from matelix.training.foreground import run_foreground
from matelix.training.rundir import RunDir


@pytest.fixture
def cli_home(home, tiny_model_dir):
    shutil.copytree(tiny_model_dir, home / "models" / "tiny")
    lines = ["id,parent_id,system,Benutzer,Kontext,Assistentin"]
    lines += [f"{i},,System,Frage {i}?,,Antwort {i} ist lang genug." for i in range(1, 13)]
    (home / "datasets" / "chat.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return home


def test_bad_config_file_exits_2_and_starts_nothing(cli_home, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model_dir": "models/tiny", "csv_path": "datasets/chat.csv", "nope": 1}))
    assert run_foreground(bad, cli_home) == 2
    assert "unknown field 'nope'" in capsys.readouterr().err
    missing = tmp_path / "missing.yaml"
    missing.write_text("model_dir: models/absent\ncsv_path: datasets/chat.csv\n")
    assert run_foreground(missing, cli_home) == 2
    assert list((cli_home / "training_outputs").iterdir()) == []


def test_unwritable_run_folder_exits_2_with_a_message_and_leaves_nothing(cli_home, tmp_path, capsys, monkeypatch):
    def disk_full(self, config):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.config_path))

    monkeypatch.setattr(RunDir, "write_config", disk_full)
    config = tmp_path / "run.yaml"
    config.write_text("model_dir: models/tiny\ncsv_path: datasets/chat.csv\n")
    assert run_foreground(config, cli_home) == 2
    err = capsys.readouterr().err
    assert "error: cannot write the run folder" in err and "No space left on device" in err and "Traceback" not in err
    assert list((cli_home / "training_outputs").iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_stops_gracefully_and_saves_the_model(cli_home, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("model_dir: models/tiny\ncsv_path: datasets/chat.csv\nmax_steps: 500\nchunk_size: 64\n"
                      "gradient_accumulation_steps: 1\nsave_steps: 1000\npreview_steps: 0\n")
    outputs = cli_home / "training_outputs"

    def interrupt_when_training():
        deadline = time.monotonic() + 600  # a wait bound on a busy machine, not a timing check
        while time.monotonic() < deadline:
            for status in outputs.glob("*/status.json"):
                try:
                    if (json.loads(status.read_text()).get("step") or 0) >= 2:
                        os.kill(os.getpid(), signal.SIGINT)
                        return
                except ValueError:
                    pass
            time.sleep(0.2)

    threading.Thread(target=interrupt_when_training, daemon=True).start()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a handler some library left: Ctrl-C still stops
    try:
        assert run_foreground(config, cli_home) == 0
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # the process's own handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
    captured = capsys.readouterr()
    assert "Run stopped" in captured.out
    # One ETA on the bar (the run's own, in the postfix), not tqdm's guess beside it.
    assert "eta=" in captured.err and not re.search(r"\d\d:\d\d<", captured.err)
    (run,) = list(outputs.iterdir())
    assert (run / "model.safetensors").is_file()
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"
