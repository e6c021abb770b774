"""Server settings, read from `MATELIX_*` environment variables (pydantic-settings).

Every field here is documented in the README's configuration table; keep both in step.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}

Quantization = Literal["none", "int8", "fp16"]
"""Weights a model is served with on the CPU (see inference/quantize.py); "none" = the model's own."""


class Settings(BaseSettings):
    """Configuration of one lab server. Paths are resolved against `home`."""

    model_config = SettingsConfigDict(env_prefix="MATELIX_", extra="ignore")

    home: Path = Field(default_factory=Path.cwd, description="Root holding datasets/, training_outputs/, models/.")
    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8002, ge=1, le=65535, description="TCP port.")
    api_key: str | None = Field(None, description="Bearer key required on every non-public route; none = open.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS (comma-separated); empty = same-origin only."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra host names the lab may be reached under (comma-separated; `*` = "
                                          "any). IP addresses, localhost and the machine's name are always allowed.")
    trust_remote_code: bool = Field(False, description="Allow models that ship their own Python code.")
    offline: bool = Field(False, description="Never contact a model hub; only local models.")
    max_upload_mb: int = Field(512, ge=1, description="Largest dataset upload in MiB.")
    max_request_mb: int = Field(16, ge=1, description="Largest request body in MiB (uploads excepted).")
    max_loaded_models: int = Field(1, ge=1, description="Models kept resident for inference (LRU eviction).")
    max_loaded_adapters: int = Field(
        8, ge=1, le=256, description="LoRA adapters kept attached to a resident base model, served in one batch "
                                     "with it (the least recently used idle one is removed first).")
    stop_timeout_s: float = Field(120.0, gt=0, description="Grace period for a stopping training worker.")
    max_concurrent_generations: int = Field(
        64, ge=1, le=1024, description="Generations decoded at once per model (the engine's batch size).")
    max_queued_generations: int = Field(
        256, ge=0, description="Generations waiting beyond those running, server-wide; more → 429 + Retry-After.")
    max_messages: int = Field(1024, ge=1, description="Most messages in one chat request.")
    max_message_chars: int = Field(200_000, ge=1, description="Longest message content or text prompt, in characters.")
    max_new_tokens: int = Field(32768, ge=1, description="Largest max_tokens / max_new_tokens a request may ask for.")
    quantization: Quantization = Field(
        "none", description="Weights of models loaded on the CPU: none (fp32), int8 (a quarter of the bytes, the "
                            "fastest decode) or fp16 (half the bytes, exact enough, fast with many clients); "
                            "a load request may choose otherwise.")
    prefix_cache_mb: int = Field(
        256, ge=0, description="Keys/values of finished conversations kept per model, so a repeated system prompt "
                               "or chat history is prefilled once (MiB; 0 = off).")
    max_n: int = Field(16, ge=1, le=16, description="Most choices (n) per prompt in one /v1 request (at most 16).")
    max_stop_strings: int = Field(64, ge=1, le=1024, description="Most stop strings in one generation request.")
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="On SIGTERM/Ctrl-C, running generations may finish this long; then their streams "
                                "end with an error event.")
    inference_backend: Literal["lab", "vllm"] = Field(
        "lab", description="lab = the lab's own engine; vllm = /v1/* and /chat* are forwarded to vLLM's "
                           "OpenAI-compatible server (started for the model, or MATELIX_VLLM_URL).")
    vllm_url: str | None = Field(None, pattern=r"^https?://\S+$", description="With the vllm backend: an "
                                 "OpenAI-compatible server already running to forward to, instead of starting "
                                 "vLLM (it must serve the models under the lab's ids).")
    vllm_executable: str = Field("vllm", description="The vLLM command the lab starts (`vllm serve ...`).")
    vllm_args: str = Field("", description="More `vllm serve` options, e.g. `--tensor-parallel-size 2`.")
    vllm_start_timeout_s: float = Field(900.0, gt=0, description="How long vLLM may take to load a model and "
                                        "answer /health.")

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("vllm_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @cached_property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @cached_property
    def outputs_dir(self) -> Path:
        return self.home / "training_outputs"

    @cached_property
    def models_dir(self) -> Path:
        return self.home / "models"

    @cached_property
    def static_dir(self) -> Path:
        return self.home / "static"

    def ensure_dirs(self) -> None:
        for d in (self.datasets_dir, self.outputs_dir, self.models_dir):
            d.mkdir(parents=True, exist_ok=True)

    def is_loopback(self) -> bool:
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False
