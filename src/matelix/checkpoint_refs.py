"""Checkpoints of training runs as model references: `run@checkpoint-N` and `run@latest`.

    parse_ref("run@latest")                          # ("run", "latest"), or None for any other reference
    folder = checkpoint_folder("run", "latest", settings)   # the folder to serve; raises ModelNotFound
    list_checkpoint_models(settings)                 # what catalog.list_models adds for runs (listings, /v1)

Only complete checkpoints count (`training.rundir.is_complete_checkpoint`: the Trainer writes
trainer_state.json last), so a checkpoint the worker is still writing is never loaded. `run@latest` is the newest
complete checkpoint while the run trains, and the run's final model once it has finished with one; it is resolved
on every request, so the request after a new checkpoint gets the new weights.
"""

from __future__ import annotations

import re
from pathlib import Path

from matelix.catalog import ModelNotFound, is_model_dir, list_run_dirs, read_json
from matelix.paths import confine, relative_to_home
from matelix.runstates import ACTIVE_STATES
from matelix.settings import Settings
from matelix.training.rundir import RunDir, checkpoint_step, is_complete_checkpoint

CHECKPOINT_REF = re.compile(r"^(?P<run>[^@]+)@(?P<which>latest|checkpoint-\d{1,12})$")


def parse_ref(ref: str) -> tuple[str, str] | None:
    match = CHECKPOINT_REF.match(ref.strip())
    return (match["run"], match["which"]) if match else None


def checkpoint_folder(run: str, which: str, settings: Settings) -> Path:
    """The folder `run@which` names (resolved, confined to training_outputs/); raises PathRefused or
    ModelNotFound."""
    outputs = settings.outputs_dir
    path = confine(run, [outputs], base=outputs)
    if path.parent != outputs.resolve() or not path.is_dir():
        raise ModelNotFound(f"no training run named {run!r} (the part before '@' is a run id)")
    if which == "latest":
        if _finished(path) and is_model_dir(path):
            return path
        checkpoint = RunDir(path).last_complete_checkpoint()
        if checkpoint is None:
            raise ModelNotFound(f"run {path.name!r} has no complete checkpoint yet")
    else:
        checkpoint = path / which
        if not checkpoint.is_dir():
            raise ModelNotFound(f"run {path.name!r} has no {which}")
        if not is_complete_checkpoint(checkpoint):
            raise ModelNotFound(f"{path.name}@{which} is not complete yet (the trainer is still writing it)")
    if not is_model_dir(checkpoint):
        raise ModelNotFound(f"{path.name}@{checkpoint.name} holds no model")
    return checkpoint.resolve()


def _finished(run: Path) -> bool:
    return read_json(run / "status.json").get("state") not in ACTIVE_STATES


def list_checkpoint_models(settings: Settings) -> list[dict]:
    """Complete checkpoints of every run (`run@checkpoint-N`) and, for a run still training, `run@latest` with
    the step it serves now; each entry has `run` and `step`."""
    out = []
    for run in list_run_dirs(settings):
        checkpoints = [c for c in RunDir(run).checkpoints() if is_complete_checkpoint(c) and is_model_dir(c)]
        if not checkpoints:
            continue
        if not _finished(run):
            newest = checkpoints[-1]
            out.append({"id": f"{run.name}@latest", "name": run.name, "kind": "latest", "run": run.name,
                        "step": checkpoint_step(newest), "path": relative_to_home(newest, settings.home),
                        "created": int(newest.stat().st_mtime)})
        out += [{"id": f"{run.name}@{c.name}", "name": run.name, "kind": "checkpoint", "run": run.name,
                 "step": checkpoint_step(c), "path": relative_to_home(c, settings.home),
                 "created": int(c.stat().st_mtime)} for c in checkpoints]
    return out
