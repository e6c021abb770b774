"""Training runs on disk: list, inspect, resume and delete."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from matelix.paths import relative_to_home
from matelix.server.deps import RunsDep
from matelix.server.errors import ApiError, as_api_error
from matelix.texts import tr
from matelix.training.config import TrainConfig, describe
from matelix.training.preflight import RunRejected

router = APIRouter(tags=["training"])


@router.get("/trainings")
def trainings(runs: RunsDep) -> list[dict]:
    """Every run under `training_outputs/`, newest first: state, model, dataset, final loss, duration."""
    rows = [runs.summary(rundir) for rundir in runs.runs()]
    return sorted(rows, key=lambda r: (r.get("created_at") or 0, r["run_id"]), reverse=True)


@router.get("/trainings/{run_id}")
def training(run_id: str, runs: RunsDep) -> dict:
    """One run: its summary plus config, status, metrics and checkpoints."""
    try:
        rundir = runs.rundir(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    home = runs.settings.home
    return {**runs.summary(rundir), "status": runs.status_view(rundir), "metrics": rundir.read_metrics(),
            "checkpoints": [{"name": c.name, "path": relative_to_home(c, home)} for c in rundir.checkpoints()]}


@router.get("/trainings/{run_id}/evaluation")
def evaluation(run_id: str, runs: RunsDep) -> dict:
    """The run's evaluation report: held-out loss and probe answers of the base model, every checkpoint and
    the final model, their scores and flips; `pending: true` until the base evaluation has ended (404
    `no_evaluation` for a run without eval split or probe file)."""
    from matelix.training.evaluation import read_report

    try:
        rundir = runs.rundir(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    report = read_report(rundir)
    if report:
        return report
    try:
        config = rundir.read_config()
    except (OSError, ValueError):
        config = None
    if config is not None and (config.eval_split > 0 or config.probe_file):
        # Evaluated, but the base evaluation has not ended yet (or the run stopped before it did).
        return {"run_id": run_id, "pending": True, "probes": [], "points": [], "loss_curve": []}
    raise ApiError(404, tr("run {run!r} has no evaluation (it needs eval_split or probe_file)", run=run_id),
                   code="no_evaluation")


class RunLabels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_name: str | None = Field(None, description="New name (empty or null clears it); left out: unchanged.")
    notes: str | None = Field(None, description="New notes (empty or null clears them); left out: unchanged.")


@router.patch("/trainings/{run_id}")
def relabel(run_id: str, body: RunLabels, runs: RunsDep) -> dict:
    """Change a run's name or notes (also while it runs); only the fields sent change."""
    try:
        rundir = runs.rundir(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    changes = {key: (value or "").strip() or None for key, value in body.model_dump(exclude_unset=True).items()}
    try:
        config = TrainConfig.model_validate({**rundir.read_config().model_dump(), **changes})
    except ValidationError as exc:
        raise ApiError(400, describe(exc), param=next(iter(changes), None), code="invalid_value") from exc
    rundir.write_config(config)
    return runs.summary(rundir)


@router.post("/trainings/{run_id}/resume")
def resume(run_id: str, runs: RunsDep) -> dict:
    """Continue a stopped, failed or interrupted run from its last complete checkpoint (same folder)."""
    try:
        rundir, ckpt = runs.resume(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    view = runs.status_view(rundir)
    return {"run_id": rundir.run_id, "save_dir": view["save_dir"], "status": view["state"],
            "resumed_from": ckpt.name}


@router.delete("/trainings/{run_id}")
def delete(run_id: str, runs: RunsDep) -> dict:
    """Remove a finished run folder (409 while its worker runs)."""
    try:
        runs.delete(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    return {"run_id": run_id, "deleted": True}
