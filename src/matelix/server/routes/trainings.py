"""Training runs on disk: list, inspect, resume and delete."""

from __future__ import annotations

from fastapi import APIRouter

from matelix.paths import relative_to_home
from matelix.server.routes.training import JobsDep, as_api_error
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
