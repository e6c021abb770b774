"""The lab's `Trainer`: HF's Trainer with a causal-LM loss that never materialises the full logits.

The decoder runs as usual (LoRA layers, gradient checkpointing and packing's position ids included; in packed
batches each example attends within its own span, `packed_attention`); the output head and the loss then run
on the trained positions only, in chunks (`chunked_loss`). A DDP-wrapped
model (nproc > 1), like a sharded one (fsdp, deepspeed), must be called through its wrapper, so there the
model computes logits for the trained positions only (`logits_to_keep` mask) and the loss is taken from them.
"""

from __future__ import annotations

import ctypes
import math
import time

import torch
from transformers import Trainer

from matelix.training.chunked_loss import linear_cross_entropy, trained_positions
from matelix.training.packed_attention import example_spans, use_packed_attention


def _causal_lm(model):
    """The transformers model under peft/DDP wrappers, or None when `model` is wrapped by DDP (which must
    be called as a whole so gradients are reduced)."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return None
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


# Tokens per forward/backward pass on a CPU: activations scale with tokens in flight, while a CPU's
# matmuls are already saturated by one 512-token row. Measured on SmolLM2-135M LoRA (2 cores, batch 4 x 512,
# no checkpointing): passes of 512 tokens ran at the speed of passes of 1024 (110 vs 108 tok/s) with a peak
# RSS of 2.9 GB instead of 5.1 GB.
CPU_TOKENS_PER_PASS = 512


def release_free_heap() -> bool:
    """Return the C heap's free memory to the OS (glibc's `malloc_trim`); False where there is no glibc.

    glibc keeps memory that freed tensors leave in its heap for reuse. With gradient checkpointing the tensors
    alive at once are small, and that retained heap sets the peak: on SmolLM2-135M LoRA (2 cores, batch 4 x
    512, passes of 512 tokens) trimming after each pass lowered the peak RSS from 2.08 GB to 1.65 GB at no
    measurable cost in speed. Without checkpointing it cost ~20% speed (pages faulted in again), so it is
    not done there. No library offers this; it is one libc call."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if not _malloc_trim:
        return False
    _malloc_trim(0)
    return True


_malloc_trim = None


class LabTrainer(Trainer):
    """`tokens_per_pass`: split each batch into passes of at most this many tokens (rows kept whole), each
    with its own backward: the gradients are those of the whole batch (every pass is normalised by the
    batch's trained-token count), the activation memory that of one pass. None = whole batches."""

    tokens_per_pass: int | None = None
    release_heap_between_passes: bool = False
    """Give the heap a pass freed back to the OS before the next one (the worker sets it on a CPU with
    gradient checkpointing, the mode a user picks to save memory; see `release_free_heap`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # An SDPA model attends per example in packed batches (`packed_attention`), for the whole training.
        base = _causal_lm(self.model)
        self.packed_attention = base is not None and use_packed_attention(base)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if num_items_in_batch is None or self.accelerator.num_processes > 1:
            return super().training_step(model, inputs, num_items_in_batch)
        total = None
        for part in self.passes(inputs):
            loss = super().training_step(model, part, num_items_in_batch)
            total = loss if total is None else total + loss
            if self.release_heap_between_passes:
                release_free_heap()
        return total

    def passes(self, inputs: dict) -> list[dict]:
        """`inputs` split into passes of at most `tokens_per_pass` tokens (rows kept whole); one pass when
        that is not set or the batch fits."""
        rows, width = inputs["input_ids"].shape
        per_pass = max(1, (self.tokens_per_pass or 0) // max(width, 1))
        if not self.tokens_per_pass or per_pass >= rows:
            return [inputs]
        return [{k: v[start:start + per_pass] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == rows
                 else v for k, v in inputs.items()} for start in range(0, rows, per_pass)]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        if self.packed_attention and "attention_mask" not in inputs and "position_ids" in inputs:
            inputs["example_spans"] = example_spans(inputs["position_ids"])  # packed rows, no padding mask
        keep, targets = trained_positions(labels)
        # Sharded weights (fsdp/deepspeed) are gathered by the wrapper's own forward: call the model whole.
        sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
        base = None if sharded else _causal_lm(model)
        decoder = getattr(base, "model", None) if base is not None else None
        head = base.get_output_embeddings() if base is not None else None
        if decoder is not None and isinstance(head, torch.nn.Linear) and head.bias is None:
            hidden = decoder(**inputs, use_cache=False).last_hidden_state  # (B, T, H)
            total = linear_cross_entropy(hidden[keep], head.weight, targets)
        else:
            logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits  # (N, V)
            total = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else max(int(targets.numel()), 1)
        if isinstance(count, torch.Tensor):
            count = count.to(total.device)
        loss = total / count
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1 \
                and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # the Trainer divides by it again
        return (loss, {"loss": loss}) if return_outputs else loss


def planned_steps(rows: int, config, world_size: int = 1) -> int:
    """Optimizer steps the Trainer will run for `rows` training rows (what `state.max_steps` becomes)."""
    if config.max_steps:
        return config.max_steps
    batches = math.ceil(rows / (config.per_device_train_batch_size * world_size))
    per_epoch = max(batches // config.gradient_accumulation_steps, 1)
    return math.ceil(config.num_train_epochs * per_epoch)


def measure_micro_step(trainer: LabTrainer) -> float:
    """Seconds for one forward + backward of the first training batch (in the passes training makes of it,
    so it needs no more memory than a training step), gradients discarded afterwards: the warm-up step the
    first ETA is estimated from (it also warms allocator and kernels for step 1)."""
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    model.train()
    trained = max(int(trained_positions(batch["labels"])[1].numel()), 1)
    start = time.perf_counter()
    for part in trainer.passes(batch):
        trainer.compute_loss(model, part, num_items_in_batch=trained).backward()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds
