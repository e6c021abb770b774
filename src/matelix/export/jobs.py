"""Exports started from the server: one at a time, on a background thread, with their progress kept for
`GET /trainings/{id}/exports` (the finished exports themselves are read from disk).

An export only loads models and writes files, so it runs in the server process (unlike training); the
request is checked before the thread starts, so a bad request is answered at once and starts nothing.
"""

from __future__ import annotations

import threading
import time

from matelix.export.runner import ExportRejected, check_request, export_name, export_run, run_folder
from matelix.settings import Settings
from matelix.texts import tr


class ExportJobs:
    """The server's export jobs: the running one and the last one of each run."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._jobs: dict[str, dict] = {}  # run_id -> its latest job
        self._running: str | None = None

    def start(self, run_id: str, fmt: str, quant: str | None) -> dict:
        """Check the request and start the export thread; ExportRejected (4xx) when it cannot start."""
        quant = check_request(fmt, quant)
        run_folder(self.settings, run_id, fmt)
        with self._lock:
            if self._running is not None:
                raise ExportRejected(409, tr("an export of {run!r} is running; wait for it to end", run=self._running),
                                     code="export_running")
            job = {"run_id": run_id, "name": export_name(fmt, quant), "format": fmt, "quant": quant,
                   "state": "running", "stage": "queued", "progress": 0.0, "started_at": time.time(),
                   "finished_at": None, "error": None, "parity": None}
            self._jobs[run_id] = job
            self._running = run_id
        threading.Thread(target=self._run, args=(job,), name=f"export-{run_id}", daemon=True).start()
        return dict(job)

    def _run(self, job: dict) -> None:
        def progress(stage: str, fraction: float) -> None:
            job.update(stage=stage, progress=round(fraction, 3))

        try:
            record = export_run(self.settings, job["run_id"], job["format"], job["quant"], progress=progress)
            job.update(state="completed", parity=record["parity"], path=record["path"])
        except ExportRejected as exc:
            job.update(state="failed", error={"message": exc.message, "status": exc.status, "code": exc.code})
        except Exception as exc:  # noqa: BLE001 - any failure ends the job with its reason, never silently
            job.update(state="failed", error={"message": f"{type(exc).__name__}: {exc}", "status": 500,
                                              "code": "export_failed"})
        finally:
            job["finished_at"] = time.time()
            with self._lock:
                self._running = None

    def job(self, run_id: str) -> dict | None:
        """The latest job of a run (running or ended), as a copy."""
        with self._lock:
            job = self._jobs.get(run_id)
            return dict(job) if job else None

    def wait(self, timeout: float) -> bool:
        """True once no export is running (for a graceful stop and for tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._running is None:
                    return True
            time.sleep(0.05)
        return False
