"""Sharded training settings: FSDP as the Trainer's own `fsdp`/`fsdp_config`, DeepSpeed as a ZeRO config file
in the run folder that DeepSpeed's own config validation accepts once the Trainer has filled its "auto"
values. Sharded runs themselves need GPUs (see docs/SCALING.md for what was run where)."""

from __future__ import annotations

import json

import pytest
from tests.conftest import lab_home

from matelix.settings import Settings
from matelix.training.config import TrainConfig
from matelix.training.jobs import RunManager
from matelix.training.modelsetup import resolve_placement
from matelix.training.preflight import RunRejected
from matelix.training.sharding import DEEPSPEED_CONFIG, sharding_arguments, write_deepspeed_config
from matelix.training.worker import training_arguments


def config(**fields) -> TrainConfig:
    return TrainConfig.model_validate({"model_dir": "m", "csv_path": "d", **fields})


def test_ddp_adds_nothing(tmp_path):
    assert sharding_arguments(config(), tmp_path) == {}


def test_fsdp_is_the_trainers_own_fsdp2_setting(tmp_path):
    args = sharding_arguments(config(distributed="fsdp", offload=True), tmp_path)
    assert args == {"fsdp": True, "fsdp_config": {"version": 2, "reshard_after_forward": True, "cpu_offload": True,
                                                  "state_dict_type": "FULL_STATE_DICT",
                                                  "auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}}


@pytest.mark.parametrize("fields, message", [
    ({"distributed": "fsdp", "train_mode": "lora"}, "LoRA trains with ddp"),
    ({"distributed": "deepspeed", "device": "cpu"}, "deepspeed needs CUDA GPUs"),
    ({"distributed": "fsdp", "device": "cpu"}, "fsdp needs CUDA GPUs"),
])
def test_unsupported_combinations_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        config(**fields)


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize("offload", [False, True])
def test_the_zero_config_is_what_deepspeed_accepts(tmp_path, tiny_model_dir, stage, offload):
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # before a ZeRO-3 config exists (zero.Init)
    run = config(distributed="deepspeed", device="cuda", deepspeed_stage=stage, offload=offload,
                 per_device_train_batch_size=4, gradient_accumulation_steps=2)
    path = write_deepspeed_config(run, tmp_path)
    assert path == tmp_path / DEEPSPEED_CONFIG and sharding_arguments(run, tmp_path) == {"deepspeed": str(path)}
    # The Trainer fills the "auto" values from its own arguments (here those of the same run on this CPU).
    cpu_run = run.model_copy(update={"distributed": "ddp", "device": "cpu"})
    args = training_arguments(cpu_run, resolve_placement(cpu_run), tmp_path, evaluate=False)
    filled = HfTrainerDeepSpeedConfig(str(path))
    try:
        filled.trainer_config_process(args)
        filled.trainer_config_finalize(args, model, 100)
        checked = DeepSpeedConfig(filled.config)  # raises on anything DeepSpeed does not accept
    finally:
        unset_hf_deepspeed_config()  # transformers keeps the config globally for ZeRO-3 model loading
    assert checked.zero_optimization_stage == stage
    assert checked.train_batch_size == 8 and checked.gradient_accumulation_steps == 2
    assert (checked.zero_config.offload_optimizer is not None) == offload
    assert (checked.zero_config.offload_param is not None) == (offload and stage == 3)


def test_deepspeed_refuses_what_it_does_not_know(tmp_path):
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.config import DeepSpeedConfig

    data = json.loads(write_deepspeed_config(config(distributed="deepspeed", device="cuda"), tmp_path).read_text())
    data["zero_optimization"]["stage"] = 7
    data.update({"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "train_batch_size": 1,
                 "bf16": {"enabled": False}, "fp16": {"enabled": False}, "gradient_clipping": 1.0})
    with pytest.raises(ValueError, match="stage"):
        DeepSpeedConfig(data)


def test_sharding_on_a_cpu_is_refused_before_the_run_starts(tmp_path, tiny_model_dir):
    """accelerate turns on FSDP and DeepSpeed for GPUs only: on a CPU the Trainer would quietly train as DDP
    (measured with accelerate 1.15: the run completed wrapped in DistributedDataParallel), so it is refused."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    home = lab_home(tmp_path, tiny_model_dir)
    (home / "datasets" / "chat.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": "Frage?"}, {"role": "assistant", "content": "Antwort."}]}) + "\n")
    runs = RunManager(Settings(home=home))
    with pytest.raises(RunRejected, match="fsdp needs CUDA GPUs") as refused:
        runs.start(TrainConfig.model_validate({"model_dir": "models/tiny-demo", "csv_path": "datasets/chat.jsonl",
                                               "nproc": 2, "distributed": "fsdp"}))  # device auto = cpu here
    assert refused.value.param == "device" and runs.runs() == []
