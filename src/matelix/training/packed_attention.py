"""Attention for packed rows: each example of a row attends causally within its own span, as its own call.

    use_packed_attention(model)                    # an sdpa model now runs "matelix_packed_sdpa"
    spans = example_spans(position_ids)            # ((0, 412), (412, 780)), ... per row
    model(input_ids=..., position_ids=..., example_spans=spans)

A packed row (`data/packing.py`) holds several examples whose `position_ids` restart at 0. transformers
turns that into one block-diagonal causal mask over the whole row, and SDPA then computes every query
against every key of the row, the blocks of other examples included, and masks them away afterwards: a row
of two examples of 390 tokens computes 4x the attention scores it needs. Here each example's span runs as
its own causal SDPA call (transformers' `sdpa_attention_forward` without a mask), which computes only the
lower triangle of its own block. The result is the masked attention's to fp32 rounding (tested), forward and
backward.

Only calls that pass `example_spans` (the lab's trainer, for batches that came without a padding mask) take
this path; every other call (generation, padded batches, evaluation) is transformers' SDPA unchanged, with
the same masks (the implementation registers SDPA's mask function). The implementation is set on the model
for the whole training, so gradient checkpointing recomputes a layer with the same attention as its forward.

Hand-written because transformers' varlen support for packed sequences is in its flash-attention
integrations, which need CUDA; on a CPU, SDPA with a block mask was the only packed path.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

NAME = "matelix_packed_sdpa"


def packed_sdpa_forward(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, example_spans: tuple | None = None, **kwargs):
    """transformers' SDPA attention; with `example_spans` (per row, the (start, end) of each example), each
    span attends causally within itself only. Returns (B, T, heads, D) as transformers' SDPA does."""
    if example_spans is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    rows = []
    for b, spans in enumerate(example_spans):
        parts = [sdpa_attention_forward(module, query[b:b + 1, :, start:end], key[b:b + 1, :, start:end],
                                        value[b:b + 1, :, start:end], None, **kwargs)[0]
                 for start, end in spans]
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))
    return torch.cat(rows), None


AttentionInterface.register(NAME, packed_sdpa_forward)
AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


# Architectures whose attention hands its keyword arguments to the attention function; with full attention
# only (a sliding window would need its own mask inside each span). Others keep transformers' packed mask.
SUPPORTED = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


def use_packed_attention(model) -> bool:
    """Switch a model of a SUPPORTED architecture with full SDPA attention to this module's (the same for
    every call that passes no `example_spans`); False, and nothing changed, for any other model."""
    config = getattr(model, "config", None)
    if type(model).__name__ not in SUPPORTED or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if getattr(config, "sliding_window", None) is not None \
            or any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
        return False
    model.set_attn_implementation(NAME)
    return True


def example_spans(position_ids: torch.Tensor) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per row of packed `position_ids` (B, T), the (start, end) of each example: a span starts where a
    position does not follow the one before it (the rule transformers builds its packed mask by)."""
    width = position_ids.shape[1]
    out = []
    for row in position_ids.tolist():
        starts = [0] + [i for i in range(1, width) if row[i] != row[i - 1] + 1]
        out.append(tuple(zip(starts, [*starts[1:], width], strict=True)))
    return tuple(out)
