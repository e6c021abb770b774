"""Serving with a graceful stop: on SIGTERM/Ctrl-C the server stops accepting connections, lets running
generations finish for `settings.shutdown_grace_s`, then ends the rest so every open stream gets a final
error event and `[DONE]` instead of a cut connection. Training workers run in their own session and are
left alone; the next server re-attaches to them from their run folders.

uvicorn waits for open connections *before* the app's lifespan shutdown runs, so ending the generations
has to happen in the server's own shutdown, between closing the listening sockets and that wait.
"""

from __future__ import annotations

import logging

import uvicorn

log = logging.getLogger("matelix.server")
SHUTDOWN_REASON = "the server is shutting down"


class LabServer(uvicorn.Server):
    """uvicorn's server, ending the app's generations after it stops accepting connections."""

    async def shutdown(self, sockets=None) -> None:
        for server in self.servers:  # stop accepting first; uvicorn's own shutdown repeats this harmlessly
            server.close()
        app = self.config.app
        registry = getattr(getattr(app, "state", None), "registry", None)
        if registry is not None:
            grace = app.state.settings.shutdown_grace_s
            log.info("shutting down: running generations may finish for %.0f s", grace)
            await registry.close(SHUTDOWN_REASON, drain_s=grace)
        await super().shutdown(sockets)


def serve(app, host: str, port: int) -> None:
    """Run `app` until SIGTERM/SIGINT (the lab logs its own access lines, so uvicorn's are off)."""
    LabServer(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False)).run()
