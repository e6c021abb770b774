"""Model side of a run: device and precision choice, loading, tokenizer/template setup, LoRA, final save."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from matelix.catalog import MODEL_MARKERS
from matelix.data.template import setup_tokenizer, uses_own_template
from matelix.training.config import TrainConfig
from matelix.training.embeddings import resize_with_mean_init
from matelix.training.rundir import FINAL_SAVE_TMP


class SetupError(ValueError):
    """A configuration that cannot run on this machine (the message says why)."""


@dataclass(frozen=True)
class Placement:
    device: str  # cpu | cuda | mps
    precision: str  # fp32 | fp16 | bf16


def resolve_placement(config: TrainConfig) -> Placement:
    """`device: auto` → CUDA, then MPS, then CPU; `precision: auto` → bf16 where supported, fp32 on CPU."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    device = config.device
    if device == "auto":
        device = "cuda" if cuda else "mps" if mps else "cpu"
    elif device == "cuda" and not cuda:
        raise SetupError("device 'cuda' was requested but no CUDA GPU is available")
    elif device == "mps" and not mps:
        raise SetupError("device 'mps' was requested but Apple MPS is not available")
    if device == "cuda" and config.nproc > torch.cuda.device_count():
        raise SetupError(f"nproc {config.nproc} needs {config.nproc} GPUs, found {torch.cuda.device_count()}")
    if config.distributed != "ddp" and device != "cuda":
        # torch's FSDP2 runs on CPU with gloo, but accelerate (which the Trainer goes through) turns on FSDP and
        # DeepSpeed for GPUs only: on a CPU the run would quietly train as DDP, unsharded.
        raise SetupError(f"distributed {config.distributed} needs CUDA GPUs (accelerate shards only there); "
                         f"this run's device is {device}: use distributed ddp")
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and device == "cpu":
        raise SetupError("precision fp16 needs a GPU; use fp32 or bf16 on cpu")
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise SetupError("this GPU does not support bf16; use fp16 or fp32")
    return Placement(device, precision)


def load_tokenizer(source: str | Path, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust_remote_code)


def prepare_tokenizer(tokenizer, config: TrainConfig, render_mode: str) -> list[str]:
    """Role tokens, pad token and chat template (the seed's template setup); returns the tokens added."""
    mode = "dialogplus" if render_mode == "dialogplus" else "chat"
    return setup_tokenizer(tokenizer, mode, force_template=config.chat_template == "matelix")


def template_choice(tokenizer) -> str:
    """`own` when the run trains (and serves) with the model's own chat template, else `matelix`."""
    return "own" if uses_own_template(tokenizer) else "matelix"


def load_model(source: str | Path, placement: Placement, config: TrainConfig, *, trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM

    # Full fine-tunes keep fp32 master weights (the Trainer autocasts); a frozen LoRA base can sit in half
    # precision on a GPU, which is where LoRA's memory saving comes from.
    dtype = torch.float32
    if config.train_mode == "lora" and placement.device != "cpu" and placement.precision != "fp32":
        dtype = torch.bfloat16 if placement.precision == "bf16" else torch.float16
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype, trust_remote_code=trust_remote_code)
    model.config.use_cache = False
    return model


def grow_vocabulary(model, tokenizer) -> bool:
    """Resize embeddings to the tokenizer, new rows mean-initialised; True when the vocabulary grew."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        resize_with_mean_init(model, len(tokenizer))
        return True
    return False


def _module_name(model, module) -> str | None:
    for name, mod in model.named_modules():
        if mod is module:
            return name.rsplit(".", 1)[-1]
    return None


def detect_lora_targets(model) -> list[str]:
    """Names of every linear layer except the output head (deduplicated by leaf name, in model order)."""
    head = model.get_output_embeddings()
    names: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in names:
                names.append(leaf)
    return names


def embedding_module_names(model) -> list[str]:
    """Leaf names of the input embedding and (untied) output head, for LoRA's modules_to_save."""
    names = [_module_name(model, model.get_input_embeddings())]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not model.get_input_embeddings().weight:
        names.append(_module_name(model, head))
    return [n for n in names if n]


def apply_lora(model, config: TrainConfig, *, train_embeddings: bool = False,
               new_token_ids: list[int] | None = None, log: Callable[[str], None]):
    """Wrap `model` in LoRA adapters.

    New tokens (role tokens, n-grams) must learn while LoRA freezes the base. With `new_token_ids` only their
    rows of the input embedding (and of an untied head) are trained (peft's `trainable_token_indices`), so
    the pretrained rows cannot drift: training the whole matrix at a LoRA learning rate moved every row of a
    pretrained model within a few steps and broke it. `train_embeddings` without ids trains the embedding
    and head in full (`modules_to_save`), for callers that do not know which rows are new."""
    from peft import LoraConfig, get_peft_model

    targets = config.lora_target_modules or detect_lora_targets(model)
    log(f"[LoRA] Detected targets: {', '.join(targets)}" if not config.lora_target_modules
        else f"[LoRA] Targets (configured): {', '.join(targets)}")
    modules_to_save = trainable_tokens = None
    if new_token_ids:
        trainable_tokens = {name: list(new_token_ids) for name in embedding_module_names(model)}
        log(f"[LoRA] Training the rows of {len(new_token_ids)} new tokens in: {', '.join(trainable_tokens)}")
    elif train_embeddings:
        modules_to_save = embedding_module_names(model)
        log(f"[LoRA] Training in full (new tokens): {', '.join(modules_to_save)}")
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, modules_to_save=modules_to_save,
                      trainable_token_indices=trainable_tokens, task_type="CAUSAL_LM")
    try:
        peft_model = get_peft_model(model, lora)
    except ValueError as exc:
        raise SetupError(f"lora_target_modules: {exc}") from exc
    trainable, total = peft_model.get_nb_trainable_parameters()
    log(f"[LoRA] trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)")
    return peft_model


def save_final_model(model, tokenizer, out_dir: Path, config: TrainConfig, base_source: str,
                     log: Callable[[str], None], state_dict: dict | None = None) -> str:
    """Save the trained model + tokenizer in HF format into `out_dir`; returns the saved form. `state_dict`:
    the full weights gathered from a sharded (fsdp/deepspeed) model."""
    form = "full"
    if config.train_mode == "lora":
        if config.merge_lora_on_save:
            model = model.merge_and_unload()
            form = "merged"
        else:
            model.peft_config["default"].base_model_name_or_path = base_source
            form = "adapter"
    model.config.use_cache = True
    # save_pretrained writes config.json before the weights, so saving in place and being killed part-way
    # would leave a folder that looks like a model; the save goes to a temp folder and is moved in whole.
    tmp = out_dir / FINAL_SAVE_TMP
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(str(tmp), state_dict=state_dict)
    tokenizer.save_pretrained(str(tmp))
    publish_model(tmp, out_dir)
    log(f"Saved {form} model and tokenizer to {out_dir.name}/")
    return form


def publish_model(src: Path, out_dir: Path) -> None:
    """Move a saved model from `src` into `out_dir` and remove `src`. The marker files (`MODEL_MARKERS`: what
    makes a folder count as a model for `RunDir.has_model` and `catalog.is_model_dir`) go first out and last
    in, so until the move has finished `out_dir` never looks like a model (not even an earlier save's)."""
    for name in MODEL_MARKERS:
        (out_dir / name).unlink(missing_ok=True)
    entries = sorted(src.iterdir(), key=lambda p: p.name in MODEL_MARKERS)
    for entry in entries:
        target = out_dir / entry.name
        if entry.is_dir() and target.is_dir():  # os.replace cannot overwrite a non-empty folder
            shutil.rmtree(target)
        os.replace(entry, target)
    src.rmdir()
