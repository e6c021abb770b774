"""Checks done before a run folder exists: user paths confined and resolved, model and tokenizer loadable,
dataset parses into samples, the configuration fits this machine. A run that passes does not fail on
any of these later; one that does not is refused with a 4xx and leaves nothing on disk.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from matelix.catalog import ModelNotFound, ModelRefused, resolve_model_ref
from matelix.paths import PathRefused, confine, relative_to_home
from matelix.remote_code import needs_remote_code, remote_code_message
from matelix.settings import Settings
from matelix.texts import tr
from matelix.training.config import TrainConfig
from matelix.training.rundir import RESUMABLE_STATES, RunDir, is_complete_checkpoint

# Why a request about runs is refused; the server answers 400, 404 or 409 (`server.errors.STATUS_BY_KIND`).
RejectKind = Literal["invalid", "not_found", "conflict"]


class RunRejected(ValueError):
    """A run request that cannot be done. `kind`: "invalid" (the request is wrong), "not_found" (it names
    something that is not there) or "conflict" (the runs' state does not allow it now); `param` is the
    offending field, `code` a stable name for the reason."""

    def __init__(self, kind: RejectKind, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class ResolvedRun:
    """Absolute locations of what a run uses (never shown to users; they see home-relative names)."""

    model_source: str  # an absolute folder or a hub model id
    model_name: str  # used in the run folder name
    dataset_path: Path
    resume_checkpoint: Path | None


def _confined(value: str, roots: list[Path], base: Path, param: str) -> Path:
    try:
        return confine(value, roots, base=base)
    except PathRefused as exc:
        raise RunRejected("invalid", f"{param}: {exc}", param=param, code="path_refused") from exc


def resolve_model(model_dir: str, settings: Settings) -> tuple[str, str]:
    """(source, display name): a model folder under models/ or training_outputs/, or a hub id.

    The same resolution as inference (`catalog.resolve_model_ref`), so a name that chats also trains.
    """
    try:
        found = resolve_model_ref(model_dir, settings)
    except PathRefused as exc:
        raise RunRejected("invalid", f"model_dir: {exc}", param="model_dir", code="path_refused") from exc
    except (ModelNotFound, ModelRefused) as exc:
        raise RunRejected("not_found", f"model_dir: {exc}", param="model_dir", code="model_not_found") from exc
    if isinstance(found, str):
        return found, found.rsplit("/", 1)[-1]
    return str(found), found.name


def resolve_dataset(csv_path: str, settings: Settings) -> Path:
    for base in (settings.home, settings.datasets_dir):
        path = _confined(csv_path, [settings.datasets_dir, settings.home], base, "csv_path")
        if path.is_file():
            return _confined(csv_path, [settings.datasets_dir], base, "csv_path")
    _confined(csv_path, [settings.datasets_dir, settings.home], settings.datasets_dir, "csv_path")
    raise RunRejected("not_found", tr("csv_path: dataset {name!r} not found under datasets/", name=csv_path), param="csv_path",
                      code="dataset_not_found")


def resolve_resume(resume_from: str, settings: Settings) -> Path:
    """A run id (its last complete checkpoint) or a checkpoint folder, inside training_outputs/."""
    for base in (settings.outputs_dir, settings.home):
        path = _confined(resume_from, [settings.outputs_dir, settings.home], base, "resume_from")
        if path.is_dir():
            path = _confined(resume_from, [settings.outputs_dir], base, "resume_from")
            if is_complete_checkpoint(path):
                return path
            ckpt = RunDir(path).last_complete_checkpoint()
            if ckpt is None:
                raise RunRejected("conflict", tr("resume_from: {run!r} has no complete checkpoint", run=resume_from),
                                  param="resume_from", code="no_checkpoint")
            return ckpt
    raise RunRejected("not_found", tr("resume_from: {run!r} is not a run or checkpoint under training_outputs/",
                              run=resume_from), param="resume_from", code="run_not_found")


def check_loadable(config: TrainConfig, resolved: ResolvedRun, settings: Settings) -> None:
    """Placement fits the machine, tokenizer loads, dataset parses into at least one sample."""
    from matelix.data.budget import bounded_read
    from matelix.training.modelsetup import SetupError, load_tokenizer, resolve_placement

    try:
        resolve_placement(config)
    except SetupError as exc:
        raise RunRejected("invalid", str(exc), param="device", code="unsupported_device") from exc
    if not settings.trust_remote_code and Path(resolved.model_source).is_dir() \
            and needs_remote_code(Path(resolved.model_source)):
        raise RunRejected("invalid", f"model_dir: {remote_code_message(config.model_dir)}", param="model_dir",
                          code="remote_code_refused")
    tokenizer_source = resolved.resume_checkpoint or resolved.model_source
    try:
        load_tokenizer(tokenizer_source, trust_remote_code=settings.trust_remote_code)
    except Exception as exc:  # transformers raises many types for an unloadable folder or id
        raise RunRejected("invalid", tr("model_dir: cannot load a tokenizer from {model!r}: {reason}", model=config.model_dir,
                                  reason=f"{type(exc).__name__}: {str(exc)[:300]}"), param="model_dir",
                          code="model_unloadable") from exc
    with bounded_read():  # one dataset read at a time in the server; its memory is returned afterwards
        _check_dataset(config, resolved.dataset_path)


def _check_dataset(config: TrainConfig, dataset_path: Path) -> None:
    from matelix.data.load import load_dataset
    from matelix.data.samples import DatasetError

    try:
        loaded = load_dataset(dataset_path, config.template_mode, config.column_name)
    except DatasetError as exc:
        raise RunRejected("invalid", f"csv_path: {exc}", param="csv_path", code="dataset_invalid") from exc
    if not loaded.samples:
        detail = "; ".join(tr("row {row}: {message}", row=p.row, message=p.message) for p in loaded.problems[:5])
        message = tr("csv_path: the dataset yields no training samples")
        raise RunRejected("invalid", f"{message} ({detail})" if detail else message, param="csv_path",
                          code="dataset_empty")
    if config.eval_split > 0 and len({s.group for s in loaded.samples}) < 2:
        raise RunRejected("invalid", tr("eval_split: the dataset has a single thread; nothing can be held out"),
                          param="eval_split", code="dataset_too_small")


def resolve_run(config: TrainConfig, settings: Settings, *, check: bool = True) -> ResolvedRun:
    source, name = resolve_model(config.model_dir, settings)
    dataset = resolve_dataset(config.csv_path, settings)
    resume = resolve_resume(config.resume_from, settings) if config.resume_from else None
    resolved = ResolvedRun(source, name, dataset, resume)
    if check:
        check_loadable(config, resolved, settings)
        from matelix.training.evaluation import check_probe_file

        check_probe_file(config, settings)
    return resolved


def new_run_dir(model_name: str, settings: Settings) -> RunDir:
    """Create `training_outputs/<model>_<YYYY-MM-DD_HH-MM-SS>/` (a suffix when that second is taken)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip(".-") or "model"
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = settings.outputs_dir / (f"{safe}_{stamp}" if n == 1 else f"{safe}_{stamp}-{n}")
        try:
            path.mkdir()
            return RunDir(path)
        except FileExistsError:
            continue
    raise RunRejected("conflict", tr("too many runs started in the same second"), code="run_name_taken")


def describe_resolved(resolved: ResolvedRun, settings: Settings) -> dict:
    """User-facing names of what a run uses (home-relative, never absolute server paths)."""
    source = Path(resolved.model_source)
    return {"model": relative_to_home(source, settings.home) if source.is_absolute() else resolved.model_source,
            "dataset": relative_to_home(resolved.dataset_path, settings.home),
            "resume_checkpoint": relative_to_home(resolved.resume_checkpoint, settings.home)
            if resolved.resume_checkpoint else None}


def resumable(rundir: RunDir) -> Path:
    """The checkpoint a stopped/failed/interrupted run continues from, or RunRejected."""
    state = rundir.read_status().get("state")
    if state not in RESUMABLE_STATES:
        raise RunRejected("conflict", tr("run {run!r} is {state}; only {states} runs can be resumed", run=rundir.run_id,
                                  state=state or "unknown", states=", ".join(sorted(RESUMABLE_STATES))),
                          code="not_resumable")
    ckpt = rundir.last_complete_checkpoint()
    if ckpt is None:
        raise RunRejected("conflict", tr("run {run!r} has no complete checkpoint to resume from", run=rundir.run_id),
                          code="no_checkpoint")
    return ckpt
