"""The one place a server settles training runs: every SUPERVISE_S it writes the end of runs whose worker
is gone and kills workers that overran their stop timeout (`RunManager.supervise`). Reads (`/status`,
Prometheus scrapes, WebSocket ticks) never do; they show a dead run settled until this has written it."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from matelix.training.jobs import RunManager

SUPERVISE_S = 1.0
log = logging.getLogger("matelix.server")


async def supervise_runs(runs: RunManager, interval: float = SUPERVISE_S) -> None:
    """Run until cancelled (the app's lifespan starts and cancels it)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(runs.supervise)
        except Exception:  # a bad run folder must not end supervision of the others
            log.exception("supervising training runs failed")
