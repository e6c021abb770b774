"""Training runs on disk: list, inspect, resume and delete."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from matelix.paths import relative_to_home
from matelix.server.deps import JobsDep
from matelix.server.errors import ApiError, as_api_error
from matelix.texts import tr
from matelix.training.config import TrainConfig, describe
from matelix.training.preflight import RunRejected

router = APIRouter(tags=["training"])


@router.get("/trainings")
def trainings(jobs: JobsDep) -> list[dict]:
    """Every run under `training_outputs/`, newest first: state, model, dataset, final loss, duration."""
    rows = [jobs.summary(rundir) for rundir in jobs.runs()]
    return sorted(rows, key=lambda r: (r.get("created_at") or 0, r["run_id"]), reverse=True)


@router.get("/trainings/{run_id}")
def training(run_id: str, jobs: JobsDep) -> dict:
    """One run: its summary plus config, status, metrics and checkpoints."""
    try:
        rundir = jobs.rundir(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    home = jobs.settings.home
    return {**jobs.summary(rundir), "status": jobs.status_view(rundir), "metrics": rundir.read_metrics(),
            "checkpoints": [{"name": c.name, "path": relative_to_home(c, home)} for c in rundir.checkpoints()]}


@router.get("/trainings/{run_id}/evaluation")
def evaluation(run_id: str, jobs: JobsDep) -> dict:
    """The run's evaluation report: held-out loss and probe answers of the base model, every checkpoint and
    the final model, their scores and flips; `pending: true` until the base evaluation has ended (404
    `no_evaluation` for a run without eval split or probe file)."""
    from matelix.training.evaluation import read_report

    try:
        rundir = jobs.rundir(run_id)
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
def relabel(run_id: str, body: RunLabels, jobs: JobsDep) -> dict:
    """Change a run's name or notes (also while it runs); only the fields sent change."""
    try:
        rundir = jobs.rundir(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    changes = {key: (value or "").strip() or None for key, value in body.model_dump(exclude_unset=True).items()}
    try:
        config = TrainConfig.model_validate({**rundir.read_config().model_dump(), **changes})
    except ValidationError as exc:
        raise ApiError(400, describe(exc), param=next(iter(changes), None), code="invalid_value") from exc
    rundir.write_config(config)
    return jobs.summary(rundir)


@router.post("/trainings/{run_id}/resume")
def resume(run_id: str, jobs: JobsDep) -> dict:
    """Continue a stopped, failed or interrupted run from its last complete checkpoint (same folder)."""
    try:
        rundir, ckpt = jobs.resume(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    view = jobs.status_view(rundir)
    return {"run_id": rundir.run_id, "save_dir": view["save_dir"], "status": view["state"],
            "resumed_from": ckpt.name}


@router.delete("/trainings/{run_id}")
def delete(run_id: str, jobs: JobsDep) -> dict:
    """Remove a finished run folder (409 while its worker runs)."""
    try:
        jobs.delete(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    return {"run_id": run_id, "deleted": True}
