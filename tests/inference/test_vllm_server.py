"""The `vllm serve` child the vLLM backend starts: its exact command line, which adapters become LoRA modules,
and the 409 reasons when vLLM cannot run here (vLLM itself is not installed on the test machines)."""

from __future__ import annotations

import json
import shutil

import pytest
from tests.conftest import lab_home

from matelix.inference.registry import ModelRegistry
from matelix.inference.vllm_server import (
    VllmUnavailable,
    VllmUpstream,
    check_available,
    lora_rank,
    vllm_command,
)
from matelix.settings import Settings


@pytest.fixture
def home(tmp_path, tiny_model_dir, tiny_adapter_dir):
    home = lab_home(tmp_path, tiny_model_dir)
    for run, rank in (("tiny_lora_a", 4), ("tiny_lora_b", 24)):
        shutil.copytree(tiny_adapter_dir, home / "training_outputs" / run)
        config_path = home / "training_outputs" / run / "adapter_config.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "r": rank}))
        (home / "training_outputs" / run / "train_config.json").write_text("{}")
        (home / "training_outputs" / run / "status.json").write_text('{"state": "completed"}')
    return home


def test_an_adapter_is_served_on_its_base_with_every_adapter_of_that_base(home):
    settings = Settings(home=home, vllm_args="--gpu-memory-utilization 0.8 --max-model-len 4096")
    served = VllmUpstream(settings, ModelRegistry(settings)).plan("tiny_lora_a")
    assert served.base.id == "models/tiny-demo"
    assert sorted(served.adapters) == ["tiny_lora_a", "tiny_lora_b"]
    assert vllm_command(settings, served, 8123) == [
        "vllm", "serve", str((home / "models" / "tiny-demo").resolve()),
        "--served-model-name", "models/tiny-demo", "--host", "127.0.0.1", "--port", "8123",
        "--enable-lora", "--max-lora-rank", "32", "--max-loras", "2",
        "--lora-modules", f"tiny_lora_a={(home / 'training_outputs' / 'tiny_lora_a').resolve()}",
        f"tiny_lora_b={(home / 'training_outputs' / 'tiny_lora_b').resolve()}",
        "--gpu-memory-utilization", "0.8", "--max-model-len", "4096"]


def test_a_base_model_without_adapters_is_served_without_lora(tmp_path, tiny_model_dir):
    settings = Settings(home=lab_home(tmp_path, tiny_model_dir), trust_remote_code=True, vllm_executable="/opt/v/vllm")
    served = VllmUpstream(settings, ModelRegistry(settings)).plan("models/tiny-demo")
    cmd = vllm_command(settings, served, 9000)
    assert cmd[:2] == ["/opt/v/vllm", "serve"] and "--trust-remote-code" in cmd and "--enable-lora" not in cmd


@pytest.mark.parametrize("ranks, expected", [([], 8), ([4], 8), ([16], 16), ([24, 8], 32), ([300], 320),
                                             ([4096], 512)])
def test_max_lora_rank_is_the_next_value_vllm_accepts(ranks, expected):
    assert lora_rank(ranks) == expected


def test_missing_vllm_is_named(tmp_path):
    with pytest.raises(VllmUnavailable, match="'no-such-vllm' is not installed"):
        check_available(Settings(home=tmp_path, vllm_executable="no-such-vllm"))


def test_no_gpu_is_named(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(VllmUnavailable, match="no CUDA GPU"):
        check_available(Settings(home=tmp_path, vllm_executable=shutil.which("python3") or "python3"))
