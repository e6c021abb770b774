"""lm-evaluation-harness from the API: the shipped tasks, start an evaluation of a model in the background
(`POST /evaluations`), and the stored results with the running job's progress and a model x task table."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from matelix.evaluation.harness import EvalRejected
from matelix.evaluation.store import latest_by_model, list_results
from matelix.evaluation.tasks import describe_tasks
from matelix.server.deps import EvaluationsDep
from matelix.server.errors import ApiError

router = APIRouter(tags=["evaluations"])


class EvaluationRequest(BaseModel):
    """What to evaluate, on which tasks."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., min_length=1, max_length=1000, description="A model folder under models/ or a run "
                       "under training_outputs/ (home-relative, as in /chat)")
    tasks: list[str] = Field(..., min_length=1, max_length=16, description="Task names from GET "
                             "/evaluations/tasks; `heldout` = the run's own probes, `heldout:<run_id>` = "
                             "another run's")
    limit: int | None = Field(None, ge=1, le=100_000, description="Items per task at most")
    backend: Literal["hf", "api"] = Field("hf", description="hf: lm-eval's in-process Hugging Face backend; "
                                          "api: lm-eval's local-completions client against this lab's "
                                          "/v1/completions (batched by the lab's engine)")


@router.get("/evaluations/tasks")
def tasks() -> list[dict]:
    """The tasks shipped with the lab (local files) and the held-out task."""
    return describe_tasks()


@router.post("/evaluations", status_code=202)
def start(body: EvaluationRequest, request: Request, jobs: EvaluationsDep) -> dict:
    """Run lm-evaluation-harness on a model in the background; follow it with `GET /evaluations`."""
    try:
        return jobs.start(body.model, body.tasks, body.limit, body.backend, str(request.base_url))
    except EvalRejected as exc:
        raise ApiError(exc.status, exc.message, param=exc.param, code=exc.code) from exc


@router.get("/evaluations")
def results(jobs: EvaluationsDep, model: str | None = None) -> dict:
    """The running (or last) job with its progress, every stored result (newest first; of one model when
    `model` is given), and the newest result per model and task for comparing models."""
    return {"job": jobs.job(), "results": list_results(jobs.settings, model),
            "table": latest_by_model(jobs.settings)}
