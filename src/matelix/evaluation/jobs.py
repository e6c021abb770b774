"""lm-eval runs started from the server: one at a time on a background thread, with their progress kept
for `GET /evaluations` (finished results are read from disk). A bad request is refused before the thread
starts."""

from __future__ import annotations

import threading
import time

from matelix.evaluation.harness import BACKENDS, EvalRejected, resolve_model, run_evaluation
from matelix.evaluation.tasks import HELDOUT, shipped_tasks
from matelix.settings import Settings
from matelix.texts import tr


class EvaluationJobs:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._job: dict | None = None

    def start(self, model: str, tasks: list[str], limit: int | None, backend: str, base_url: str) -> dict:
        """Check the request and start the evaluation thread; EvalRejected (4xx) when it cannot start."""
        if backend not in BACKENDS:
            raise EvalRejected(400, f"backend: use one of {', '.join(BACKENDS)}", param="backend")
        unknown = [t for t in tasks if t not in shipped_tasks() and t.split(":")[0] != HELDOUT]
        if unknown or not tasks:
            raise EvalRejected(400, f"tasks: unknown task {unknown[0]!r}" if unknown else "tasks: name a task",
                               param="tasks", code="unknown_task")
        resolve_model(model, self.settings)
        with self._lock:
            if self._job is not None and self._job["state"] == "running":
                raise EvalRejected(409, tr("an evaluation of {model!r} is running; wait for it to end",
                                           model=self._job["model"]),
                                   code="evaluation_running")
            job = {"model": model, "tasks": tasks, "limit": limit, "backend": backend, "state": "running",
                   "stage": "queued", "progress": 0.0, "started_at": time.time(), "finished_at": None,
                   "error": None, "result": None}
            self._job = job
        threading.Thread(target=self._run, args=(job, base_url), name="lm-eval", daemon=True).start()
        return dict(job)

    def _run(self, job: dict, base_url: str) -> None:
        def progress(stage: str, fraction: float) -> None:
            job.update(stage=stage, progress=round(fraction, 3))

        try:
            job["result"] = run_evaluation(self.settings, job["model"], job["tasks"], limit=job["limit"],
                                           backend=job["backend"], base_url=base_url, progress=progress)
            job.update(state="completed", progress=1.0, stage="done")
        except EvalRejected as exc:
            job.update(state="failed", error={"message": exc.message, "status": exc.status, "code": exc.code})
        except Exception as exc:  # noqa: BLE001 - any failure ends the job with its reason, never silently
            job.update(state="failed", error={"message": f"{type(exc).__name__}: {exc}", "status": 500,
                                              "code": "evaluation_failed"})
        finally:
            job["finished_at"] = time.time()

    def job(self) -> dict | None:
        with self._lock:
            return dict(self._job) if self._job else None

    def wait(self, timeout: float) -> bool:
        """True once no evaluation is running (for tests and a graceful stop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job()
            if job is None or job["state"] != "running":
                return True
            time.sleep(0.1)
        return False
