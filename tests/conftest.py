"""Shared fixtures: a tiny model built in the test session, an isolated home, an app client and a live server."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from matelix.settings import Settings  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The demo model factory's output, built once per test session (random init, ~4M parameters)."""
    from matelix.demo.model import create_demo_model

    return create_demo_model(tmp_path_factory.mktemp("models") / "tiny-demo", seed=0)


@pytest.fixture
def home(tmp_path) -> Path:
    for sub in ("datasets", "training_outputs", "models"):
        (tmp_path / sub).mkdir()
    return tmp_path


@pytest.fixture
def make_settings(home):
    def _make(**overrides) -> Settings:
        return Settings(home=home, **overrides)

    return _make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def client(settings):
    from fastapi.testclient import TestClient

    from matelix.server.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The real app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, settings: Settings):
        import uvicorn

        from matelix.server.app import create_app

        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("live server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live_server(settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server
