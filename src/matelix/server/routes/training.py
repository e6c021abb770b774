"""The active training run: start, stop, status, logs (REST and WebSocket) and the live preview.

Every route reads the run folder on disk (through `training.jobs.RunManager`); `run_id` picks a run,
the default is the active run, else the most recently started one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from matelix.server.deps import RunsDep
from matelix.server.errors import ApiError, ErrorResponse, as_api_error
from matelix.training.config import TrainConfig
from matelix.training.jobs import RunManager
from matelix.training.preflight import RunRejected
from matelix.training.rundir import MetricsReader, RunDir

router = APIRouter(tags=["training"])

MAX_LOG_LINES = 10_000
WS_POLL_S = 0.25


def pick_run(runs: RunManager, run_id: str | None) -> RunDir | None:
    try:
        return runs.current(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc


@router.post("/start", status_code=201, responses={507: {"model": ErrorResponse,
                                                         "description": "The run folder cannot be written"}})
def start(config: TrainConfig, runs: RunsDep) -> dict:
    """Validate the config, create a run folder and start its worker (409 while a run is active)."""
    try:
        rundir = runs.start(config)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    except OSError as exc:  # e.g. a full disk; start() has removed the half-made run folder
        raise ApiError(507, f"cannot write the run folder: {exc.strerror or exc}", code="storage_error") from exc
    view = runs.status_view(rundir)
    return {"run_id": rundir.run_id, "save_dir": view["save_dir"], "status": view["state"]}


@router.post("/stop")
def stop(runs: RunsDep, run_id: str | None = None) -> dict:
    """Ask the active run to stop after its current optimizer step (killed after the stop timeout)."""
    try:
        rundir = runs.stop(run_id)
    except RunRejected as exc:
        raise as_api_error(exc) from exc
    return runs.status_view(rundir)


@router.get("/status")
def status(runs: RunsDep, run_id: str | None = None) -> dict:
    """State, progress, loss, throughput and ETA of the active (or latest) run."""
    return runs.status_view(pick_run(runs, run_id))


@router.get("/logs")
def logs(runs: RunsDep, since: Annotated[int, Query(ge=0)] = 0,
         limit: Annotated[int, Query(ge=1, le=MAX_LOG_LINES)] = 1000, run_id: str | None = None) -> dict:
    """Log lines with id > since (ids grow by one per line, so a client continues without duplicates)."""
    rundir = pick_run(runs, run_id)
    if rundir is None:
        return {"run_id": None, "lines": [], "last_id": 0}
    reader = runs.log_reader(rundir)
    lines = reader.read(since, limit)
    return {"run_id": rundir.run_id, "lines": lines, "last_id": lines[-1]["id"] if lines else since}


@router.get("/livepreview")
def livepreview(runs: RunsDep, run_id: str | None = None) -> dict:
    """The batch being trained (trained spans marked) and the latest sample generated from a fixed prompt."""
    rundir = pick_run(runs, run_id)
    if rundir is None:
        return {"run_id": None, "batch": None, "sample": None, "updated_at": None}
    preview = rundir.read_preview()
    return {"run_id": rundir.run_id, "batch": preview.get("batch"), "sample": preview.get("sample"),
            "updated_at": preview.get("updated_at")}


class _Follower:
    """What one WebSocket client has been sent so far (log id, metric count, last status)."""

    def __init__(self, runs: RunManager, run_id: str | None, since: int, metrics_since: int):
        self.runs = runs
        self.fixed_run = run_id
        self.rundir: RunDir | None = None
        self.metrics: MetricsReader | None = None
        self.since = since
        self.metrics_sent = metrics_since
        self.last_status: str | None = None

    def _pick(self) -> RunDir | None:
        # While the followed run's worker lives it is the current run (a second run cannot start meanwhile),
        # so the scan of every run's status.json is needed only once it has ended.
        if not self.fixed_run and self.rundir is not None and self.runs.alive(self.rundir):
            return self.rundir
        return self.runs.current(self.fixed_run)

    def poll(self) -> list[dict]:
        rundir = self._pick()
        events: list[dict] = []
        if rundir is None:
            return events
        if self.rundir is None or rundir.run_id != self.rundir.run_id:
            if self.rundir is not None:  # a new run started: follow it from its first line
                self.since, self.metrics_sent = 0, 0
            self.rundir = rundir
            self.metrics = MetricsReader(rundir.metrics_path)
        status = self.runs.status_view(rundir)
        encoded = json.dumps(status, sort_keys=True, default=str)
        if encoded != self.last_status:
            self.last_status = encoded
            events.append({"type": "status", **status})
        for line in self.runs.log_reader(rundir).read(self.since, 500):
            events.append({"type": "log", "run_id": rundir.run_id, **line})
            self.since = line["id"]
        first, records = self.metrics.read_new()
        for number, record in enumerate(records, first):
            if number >= self.metrics_sent:
                events.append({"type": "metric", "run_id": rundir.run_id, **record})
        self.metrics_sent = max(self.metrics_sent, first + len(records))
        return events


@router.websocket("/ws/logs")
async def ws_logs(websocket: WebSocket, since: int = 0, metrics_since: int = 0, run_id: str | None = None):
    """Push `{"type": "log"|"status"|"metric", ...}` events; log ids continue after `since`."""
    runs = websocket.app.state.runs
    await websocket.accept()
    follower = _Follower(runs, run_id, max(0, since), max(0, metrics_since))
    # The client sends nothing, but only a pending receive() learns that it has gone; without one an idle
    # run's follower would poll for ever after the client left.
    recv = asyncio.create_task(websocket.receive())
    try:
        while True:
            try:
                events = await run_in_threadpool(follower.poll)
            except RunRejected as exc:
                await websocket.send_json({"type": "error", "message": exc.message})
                await websocket.close(code=1008)
                return
            for event in events:
                await websocket.send_json(event)
            done, _ = await asyncio.wait({recv}, timeout=WS_POLL_S)
            if done:
                if recv.result()["type"] == "websocket.disconnect":
                    return
                recv = asyncio.create_task(websocket.receive())  # a message from the client is ignored
    except WebSocketDisconnect:
        return
    finally:
        recv.cancel()
