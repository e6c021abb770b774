"""`POST /estimate`: how long a run with this config would take on this machine, measured before it starts.

The measurement (the run's data pipeline and a few real optimizer steps) runs in a child process, as
training does, so the server keeps answering meanwhile; it is refused while a run trains (the two would
slow each other down and the figure would be wrong).
"""

from __future__ import annotations

import json
import subprocess
import sys

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from matelix.server.deps import RunsDep
from matelix.server.errors import ApiError, as_api_error
from matelix.texts import tr
from matelix.training.config import TrainConfig
from matelix.training.jobs import worker_env
from matelix.training.preflight import RunRejected, resolve_run

router = APIRouter(tags=["training"])

ESTIMATE_TIMEOUT_S = 900


@router.post("/estimate")
async def estimate(config: TrainConfig, runs: RunsDep) -> dict:
    """Rows, tokens and optimizer steps of the run, measured seconds per step, and the expected duration
    (`seconds`), with cheaper settings suggested when it is long (`long`, `suggestions`)."""
    settings = runs.settings
    try:
        await run_in_threadpool(resolve_run, config, settings)  # a bad model or dataset: the same 4xx as /start
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    active = await run_in_threadpool(runs.active)
    if active is not None:
        raise ApiError(409, tr("run {run!r} is training; estimate when it has ended", run=active.run_id),
                       code="run_active")
    try:
        done = await run_in_threadpool(
            subprocess.run, [sys.executable, "-m", "matelix.training.estimate", str(settings.home)],
            input=config.model_dump_json(), capture_output=True, text=True, timeout=ESTIMATE_TIMEOUT_S,
            env=worker_env(settings, 1), cwd=str(settings.home))
    except subprocess.TimeoutExpired as exc:
        raise ApiError(504, tr("the estimate took longer than {seconds} s", seconds=ESTIMATE_TIMEOUT_S),
                       code="timeout") from exc
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    if done.returncode != 0 or "seconds" not in answer:
        tail = answer.get("error") or (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ApiError(400, tr("the estimate failed: {reason}", reason=tail), code="estimate_failed")
    return answer
