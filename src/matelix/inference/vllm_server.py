"""vLLM as the lab's serving engine (`MATELIX_INFERENCE_BACKEND=vllm`): vLLM's own OpenAI-compatible server
runs as a child process for one base model, with the runs' LoRA adapters of that base as LoRA modules; the
lab's routes forward to it (`server.routes.vllm`).

    upstream = VllmUpstream(settings, registry)
    url, model_id = await upstream.ensure("my-run")   # starts (or restarts for another base) `vllm serve`
    upstream.headers                                  # the key the child was started with
    await upstream.close()

With `MATELIX_VLLM_URL` nothing is started: requests go to that server as they are (it must serve the models
under the lab's ids, e.g. `vllm serve models/X --served-model-name models/X`).

The child listens on 127.0.0.1 with a random API key (passed in its environment, not on its command line),
so only the lab reaches it. Its output goes to `vllm.log` under home.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from matelix.catalog import list_run_dirs, read_json
from matelix.inference.loading import ModelSource
from matelix.inference.registry import ModelNotFound, ModelRefused, ModelRegistry
from matelix.paths import PathRefused
from matelix.settings import Settings

log = logging.getLogger("matelix.inference")

LOG_NAME = "vllm.log"
HEALTH_POLL_S = 0.5
STOP_WAIT_S = 30.0
# vLLM's accepted --max-lora-rank values; an adapter's rank is rounded up to the next one.
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class VllmUnavailable(Exception):
    """vLLM cannot run here (not installed, no GPU): a 409 naming what is missing."""


class UpstreamFailed(Exception):
    """vLLM did not come up or cannot be reached: a 502 with its reason."""


@dataclass(frozen=True)
class Served:
    """What one `vllm serve` child serves: a base model and the adapters (id -> folder) trained on it."""

    base: ModelSource
    adapters: dict[str, Path] = field(default_factory=dict)
    max_lora_rank: int = LORA_RANKS[0]


def vllm_command(settings: Settings, served: Served, port: int) -> list[str]:
    """The exact `vllm serve` command line (models named by the lab's ids, so requests pass unchanged)."""
    cmd = [settings.vllm_executable, "serve", str(served.base.path or served.base.id),
           "--served-model-name", served.base.id, "--host", "127.0.0.1", "--port", str(port)]
    if settings.trust_remote_code:
        cmd.append("--trust-remote-code")
    if served.adapters:
        cmd += ["--enable-lora", "--max-lora-rank", str(served.max_lora_rank),
                "--max-loras", str(min(len(served.adapters), 8)),
                "--lora-modules", *(f"{name}={path}" for name, path in sorted(served.adapters.items()))]
    return cmd + shlex.split(settings.vllm_args)


def lora_rank(ranks: list[int]) -> int:
    """The smallest accepted --max-lora-rank covering every adapter's rank."""
    top = max(ranks, default=LORA_RANKS[0])
    return next((r for r in LORA_RANKS if r >= top), LORA_RANKS[-1])


def check_available(settings: Settings) -> None:
    """Raise VllmUnavailable unless the vLLM command is installed and a CUDA GPU is present."""
    if shutil.which(settings.vllm_executable) is None:
        raise VllmUnavailable(
            f"MATELIX_INFERENCE_BACKEND is vllm but the command {settings.vllm_executable!r} is not installed on "
            "this server (pip install vllm, on a machine with a CUDA GPU), and MATELIX_VLLM_URL is not set")
    import torch

    if not torch.cuda.is_available():
        raise VllmUnavailable("MATELIX_INFERENCE_BACKEND is vllm but this server has no CUDA GPU; use the lab's "
                              "own engine (MATELIX_INFERENCE_BACKEND=lab) or point MATELIX_VLLM_URL at a vLLM server")


def free_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VllmUpstream:
    """The OpenAI-compatible server the lab forwards to: MATELIX_VLLM_URL, or a `vllm serve` child."""

    def __init__(self, settings: Settings, registry: ModelRegistry):
        self.settings = settings
        self.registry = registry
        self._key = secrets.token_urlsafe(24)
        self._proc: subprocess.Popen | None = None
        self._served: Served | None = None
        self._url: str | None = None
        self._lock = asyncio.Lock()

    @property
    def external(self) -> bool:
        return bool(self.settings.vllm_url)

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.external else {"Authorization": f"Bearer {self._key}"}

    def model_id(self, ref: str | None) -> str:
        """The lab's id for a request's model (None/"" = the default model, as the lab's own engine picks)."""
        return ref.strip() if ref and ref.strip() else self.registry.default_source().id

    async def ensure(self, ref: str | None) -> tuple[str, str]:
        """(base URL, model id) of the server that answers for `ref`, starting vLLM for its base when needed.
        Raises ModelNotFound/PathRefused/ModelRefused for a bad reference, VllmUnavailable, UpstreamFailed."""
        if self.external:
            return self.settings.vllm_url.rstrip("/"), self.model_id(ref)
        model_id = self.model_id(ref)
        async with self._lock:
            served = await asyncio.to_thread(self.plan, model_id)
            running = self._proc is not None and self._proc.poll() is None
            if not running or self._served != served:
                await asyncio.to_thread(check_available, self.settings)
                await asyncio.to_thread(self._stop)
                await self._start(served)
            return self._url, model_id

    def plan(self, model_id: str) -> Served:
        """The base model `model_id` needs and every finished run's adapter on that base."""
        source = self.registry.resolve(model_id)
        base = self._base_of(source) if source.kind == "adapter" else source
        adapters, ranks = {}, []
        for run in list_run_dirs(self.settings):
            config = read_json(run / "adapter_config.json")
            if not config or (run / "config.json").is_file():
                continue
            try:
                if self._base_of(self.registry._local_source(run.resolve())).id != base.id:
                    continue
            except (ModelNotFound, ModelRefused, PathRefused):
                continue
            adapters[run.name] = run.resolve()
            ranks.append(int(config.get("r") or LORA_RANKS[0]))
        return Served(base=base, adapters=adapters, max_lora_rank=lora_rank(ranks))

    def _base_of(self, adapter: ModelSource) -> ModelSource:
        base = (read_json(adapter.path / "adapter_config.json") or {}).get("base_model_name_or_path")
        if not base:
            raise ModelRefused(f"adapter {adapter.id!r} names no base model", "model")
        return self.registry.resolve(base)

    async def _start(self, served: Served) -> None:
        port = free_local_port()
        cmd = vllm_command(self.settings, served, port)
        log.info("starting vLLM: %s", shlex.join(cmd))
        log_path = self.settings.home / LOG_NAME
        env = {**os.environ, "VLLM_API_KEY": self._key}
        if self.settings.offline:
            env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        with log_path.open("ab") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env, cwd=str(self.settings.home), start_new_session=True)
        self._served, self._url = served, f"http://127.0.0.1:{port}"
        await self._wait_healthy(log_path)

    async def _wait_healthy(self, log_path: Path) -> None:
        import httpx

        deadline = time.monotonic() + self.settings.vllm_start_timeout_s
        async with httpx.AsyncClient(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise UpstreamFailed(f"vLLM exited with code {self._proc.returncode} while starting: "
                                         f"{tail(log_path)}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self._url}/health")).status_code == 200:
                        log.info("vLLM ready at %s", self._url)
                        return
                await asyncio.sleep(HEALTH_POLL_S)
        await asyncio.to_thread(self._stop)
        raise UpstreamFailed(f"vLLM did not answer /health within {self.settings.vllm_start_timeout_s:g} s "
                             f"(MATELIX_VLLM_START_TIMEOUT_S): {tail(log_path)}")

    def _stop(self) -> None:
        proc, self._proc, self._served = self._proc, None, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()

    async def close(self) -> None:
        await asyncio.to_thread(self._stop)

    def status(self) -> dict:
        """For /inference_status: where requests go and what the child serves."""
        served = self._served
        return {"backend": "vllm", "url": self.settings.vllm_url or self._url,
                "external": self.external, "running": self.external or (self._proc is not None
                                                                         and self._proc.poll() is None),
                "model": served.base.id if served else None, "adapters": sorted(served.adapters) if served else []}


def tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(no output)"
    except OSError:
        return "(no output)"
