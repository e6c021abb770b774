"""`matelix train [CONFIG.yaml|json] [--preset NAME] [--home DIR] [--FIELD VALUE ...]`: one run in the foreground
with a progress bar. Every TrainConfig field is an option (`--learning-rate 1e-4`, `--ngrams.top-k 500`) that
overrides the config file, which overrides the preset.

The worker is the same child process the server starts (so the run folder, logs and status are the same
and a server can watch it); this command follows its files. Ctrl-C asks for a graceful stop (finish the
step, save a checkpoint and the model); a second Ctrl-C kills the worker. Exit status 0 when the run completes
or stops, 1 when it fails or is killed, 2 when it cannot start (bad config, refused run, run folder not
writable).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from matelix.paths import relative_to_home
from matelix.settings import Settings
from matelix.training.config import ConfigFileError, TrainConfig, describe, load_config_file, overlay
from matelix.training.jobs import RunManager
from matelix.training.preflight import RunRejected
from matelix.training.presets import PresetError, load_preset

POLL_S = 0.5
# tqdm's own remaining-time guess is left out: the run's ETA (the worker's, the same the dashboard shows)
# is in the postfix, so the bar shows one ETA, not two that disagree.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
EXIT_CODES = {"completed": 0, "stopped": 0}


def _postfix(view: dict) -> dict:
    out = {}
    if view.get("loss") is not None:
        out["loss"] = f"{view['loss']:.4f}"
    if view.get("tokens_per_second"):
        out["tok/s"] = f"{view['tokens_per_second']:.0f}"
    if view.get("eta_seconds") is not None:
        out["eta"] = f"{view['eta_seconds']:.0f}s"
    if view.get("state") not in (None, "running"):
        out["state"] = view["state"]
    return out


def describe_nodes(config: TrainConfig) -> str:
    """What this node of a multi-node run does, in one line."""
    where = f"{config.master_addr}:{config.master_port}"
    if config.node_rank == 0:
        ranks = "1" if config.nnodes == 2 else f"1 to {config.nnodes - 1}"
        doing = (f"node 0 of {config.nnodes}: waiting at {where} for the other nodes to join (on node K: "
                 f"matelix train CONFIG --node-rank K, K = {ranks}); this node keeps the checkpoints and the "
                 "final model")
    else:
        doing = (f"node {config.node_rank} of {config.nnodes}: joining node 0 at {where}; node 0 keeps the "
                 "checkpoints and the final model, this folder only this node's log and status")
    return (f"Multi-node run, {doing}. {config.nproc} process(es) here, {config.world_size} in all; a node "
            f"missing for {config.node_timeout_s} s fails the run.")


def load_run_config(settings: Settings, config_path: Path | None, preset: str | None,
                    overrides: dict | None = None) -> TrainConfig:
    """The config of the run: the preset's fields (when named), the config file's on top, then `overrides`
    (the command line's)."""
    base = {}
    if preset:
        try:
            base = load_preset(settings.home, preset)["config"]
        except PresetError as exc:
            raise ConfigFileError(f"preset: {exc.message}") from exc
    if config_path is not None:
        return load_config_file(config_path, base, overrides)
    try:
        return TrainConfig.model_validate(overlay(base, overrides or {}))
    except ValueError as exc:  # pydantic's ValidationError is one
        raise ConfigFileError(f"{f'preset {preset!r}' if preset else 'options'}: {describe(exc)}") from exc


def run_foreground(config_path: Path | None, home: Path | None = None, preset: str | None = None,
                   overrides: dict | None = None) -> int:
    """Start the run described by `config_path`, the preset named `preset` under `home` and `overrides` and
    follow it to its end; returns an exit code."""
    settings = Settings(home=home) if home else Settings()
    try:
        config = load_run_config(settings, config_path, preset, overrides)
    except ConfigFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("Config:", config.model_dump_json(exclude_defaults=True))
    try:
        settings.ensure_dirs()
        runs = RunManager(settings)
        rundir = runs.start(config)
    except RunRejected as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a full disk; start() has removed the half-made run folder
        print(f"error: cannot write the run folder in {settings.outputs_dir}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    print(f"Run {rundir.run_id} -> {relative_to_home(rundir.path, settings.home)}/ (Ctrl-C stops gracefully)")
    if config.nnodes > 1:
        print(describe_nodes(config))
    reader = runs.log_reader(rundir)
    with _ctrl_c_interrupts():
        view = _follow(runs, rundir, reader)
    state = view.get("state")
    print(f"Run {state}: {relative_to_home(rundir.path, settings.home)}/")
    if view.get("error"):
        print(f"error: {view['error'].get('message')}", file=sys.stderr)
    return EXIT_CODES.get(state, 1)


@contextmanager
def _ctrl_c_interrupts():
    """Ctrl-C raises KeyboardInterrupt while this command follows its run, whatever handler the process had
    (a library or an embedding program may have replaced Python's default); the old handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _follow(runs: RunManager, rundir, reader) -> dict:
    """Show the run's log and progress until it ends; the first Ctrl-C stops it gracefully, the second kills it.
    Returns the last status view."""
    from tqdm import tqdm

    since, interrupts = 0, 0
    view: dict = {}
    last_shown: tuple | None = None
    with tqdm(total=None, unit="step", dynamic_ncols=True, desc="train", bar_format=BAR_FORMAT) as bar:
        while True:
            try:
                for line in reader.read(since, 1000):
                    bar.write(line["line"])
                    since = line["id"]
                runs.settle(rundir)  # this command is the run's supervisor: no server watches it
                view = runs.status_view(rundir)
                shown = (view.get("total_steps"), view.get("step"), _postfix(view))
                if shown != last_shown:  # redraw only on change: the output may be a file, not a terminal
                    last_shown = shown
                    bar.total = shown[0] or bar.total
                    bar.n = shown[1] or 0
                    bar.set_postfix(shown[2], refresh=True)
                if not view["running"]:
                    break
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    runs.stop(rundir.run_id)
                    bar.write("Stopping: finishing the current step, then saving a checkpoint and the model "
                              "(Ctrl-C again to kill)")
                else:
                    bar.write("Killing the worker")
                    runs.kill(rundir.run_id)
        for line in reader.read(since, 100_000):
            bar.write(line["line"])
    return view
