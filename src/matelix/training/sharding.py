"""Sharded training: the `distributed` strategy of a run as the HF Trainer's own arguments.

FSDP goes through `TrainingArguments(fsdp=True, fsdp_config=...)` (accelerate's FSDP2 plugin); DeepSpeed
through a ZeRO config file written into the run folder (`deepspeed_config.json`) whose "auto" values the
Trainer fills from its own arguments (batch size, accumulation, clipping, precision), so the file and the
run cannot disagree. Nothing here shards anything itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DEEPSPEED_CONFIG = "deepspeed_config.json"


def fsdp_config(config) -> dict:
    """accelerate's FSDP2 settings: every decoder layer its own shard unit (the model's `_no_split_modules`);
    full weights gathered for saving, so checkpoints and the final model are ordinary HF folders."""
    return {"version": 2, "reshard_after_forward": True, "cpu_offload": config.offload,
            "state_dict_type": "FULL_STATE_DICT", "auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}


def deepspeed_config(config) -> dict:
    """A ZeRO-2/3 config; "auto" = the Trainer's value (transformers' DeepSpeed integration fills them)."""
    zero: dict = {"stage": config.deepspeed_stage, "overlap_comm": True, "contiguous_gradients": True,
                  "reduce_bucket_size": "auto"}
    if config.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if config.deepspeed_stage == 3:
        zero.update({"stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                     # The final save gathers the full 16-bit weights (a plain HF folder, not ZeRO shards).
                     "stage3_gather_16bit_weights_on_model_save": True})
        if config.offload:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "steps_per_print": 10**9,
            "wall_clock_breakdown": False}


def write_deepspeed_config(config, run_dir: Path) -> Path:
    """`run_dir/deepspeed_config.json`, written atomically (each process writes the same bytes)."""
    path = Path(run_dir) / DEEPSPEED_CONFIG
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(deepspeed_config(config), indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def sharding_arguments(config, run_dir: Path) -> dict:
    """The `TrainingArguments` keywords of the run's strategy (none for ddp)."""
    if config.distributed == "fsdp":
        return {"fsdp": True, "fsdp_config": fsdp_config(config)}
    if config.distributed == "deepspeed":
        return {"deepspeed": str(write_deepspeed_config(config, run_dir))}
    return {}
