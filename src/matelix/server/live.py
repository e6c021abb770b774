"""Start a real lab server for tests, benchmarks and scripts, and wait until it answers `/health`.

    with ThreadedServer(settings) as server:      # the app under uvicorn in a thread of this process
        httpx.get(server.url + "/health")
    server = ServerProcess.lab(home, log, env={"MATELIX_API_KEY": "k"})   # `python -m matelix serve`
    server.start(); server.url; server.proc.send_signal(signal.SIGTERM); server.stop()
    ServerProcess([cli, "serve", ...], port=port).start()                 # any other HTTP server

`free_port()` picks a free loopback port. A server that exits or stays silent while starting raises
`ServerDidNotStart` with the tail of its log.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from matelix.settings import Settings

START_TIMEOUT_S = 180.0


class ServerDidNotStart(RuntimeError):
    """The server exited, or did not answer its health path in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, *, path: str = "/health", timeout: float = START_TIMEOUT_S,
                 alive=lambda: True, log: Path | None = None) -> None:
    """Poll `url + path` until it answers 200; `alive()` false (the server exited) fails at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise ServerDidNotStart(f"the server at {url} exited while starting{_tail(log)}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise ServerDidNotStart(f"the server at {url} did not answer {path} within {timeout:.0f} s{_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.is_file():
        return ""
    return ":\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:])


class ThreadedServer:
    """The lab's app under uvicorn in a daemon thread of this process, on a free loopback port."""

    def __init__(self, settings: Settings, *, app=None, port: int | None = None):
        import uvicorn

        from matelix.server.app import create_app

        self.settings = settings
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app if app is not None else create_app(settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        wait_healthy(self.url, alive=self.thread.is_alive)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class ServerProcess:
    """An HTTP server in a subprocess (`argv` must serve on `port`); output goes to `log` (or nowhere)."""

    def __init__(self, argv: list[str], *, port: int, env: dict[str, str] | None = None, log: Path | None = None,
                 health_path: str = "/health"):
        self.argv, self.port, self.log, self.health_path = argv, port, log, health_path
        self.env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    @classmethod
    def lab(cls, home: Path, log: Path | None = None, *, env: dict[str, str] | None = None) -> ServerProcess:
        """`python -m matelix serve --home HOME` on a free port."""
        port = free_port()
        return cls([sys.executable, "-m", "matelix", "serve", "--home", str(home), "--port", str(port)],
                   port=port, env=env, log=log)

    def start(self, timeout: float = START_TIMEOUT_S) -> ServerProcess:
        if self.log is not None:
            with self.log.open("ab") as fh:
                self.proc = subprocess.Popen(self.argv, stdout=fh, stderr=subprocess.STDOUT, env=self.env)
        else:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
        try:
            wait_healthy(self.url, path=self.health_path, timeout=timeout, alive=lambda: self.proc.poll() is None,
                         log=self.log)
        except ServerDidNotStart:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` s; the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
