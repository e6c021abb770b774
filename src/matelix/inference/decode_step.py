"""One decode step of a Llama-style model without transformers' per-call glue.

    step = decode_step_for(model)                          # None: not a model this module knows
    logits = step(input_ids, mask, position_ids, cache)    # (B, 1) new tokens, (B, T) 0/1 mask → (B, V)

The engine's decode step feeds one token per row. transformers' forward around the layers (argument decorators,
a 4-D mask built for every call, the attention-interface registry, output dataclasses, `**kwargs` threading
through every module) cost time on every step: on SmolLM2-135M with fp16 weights (2 cores, 64-token cache,
`decode_step_ms` in `bench/cpu_serving.py`) a step took 51.9 ms through the model's forward and 39.6 ms here
at 1 row, 123.6 and 105.9 ms at 16 rows when measured alone (1.09x / 1.03x inside a full, busier bench
run). This module runs the same submodules
(embedding, norms, projections — quantized or per-row LoRA ones included —, rotary embedding, activation, head)
in the same order, and calls attention exactly as transformers' SDPA integration does for one query token (GQA:
`enable_gqa` without a mask, the query heads folded onto the KV heads with one), so the logits are bitwise equal
to the model's own forward (tested); only the glue is gone.

Hand-written because no library offers an eager decode step over a growing, re-padded batch cache: transformers'
compiled static-cache path needs a fixed batch (the engine's rows join and leave every step) and compiled here
for ~97 s. Prefill, prompt logprobs, other architectures, sliding-window models and PEFT wrappers keep the
model's own forward.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

SUPPORTED = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")

DecodeStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, object], torch.Tensor]


def decode_step_for(model) -> DecodeStep | None:
    """The lean decode step for `model`, or None when the model's own forward must run (unknown architecture,
    sliding-window or non-SDPA attention, extra per-head norms)."""
    if type(model).__name__ not in SUPPORTED:
        return None
    config = model.config
    if getattr(config, "_attn_implementation", None) != "sdpa" or getattr(config, "sliding_window", None) is not None:
        return None
    if any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
        return None
    layers = model.model.layers
    attn = layers[0].self_attn
    if hasattr(attn, "q_norm") or not all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")):
        return None
    rotate = getattr(sys.modules[type(attn).__module__], "apply_rotary_pos_emb", None)
    if rotate is None:
        return None
    return lambda input_ids, mask, position_ids, cache: _step(model, rotate, input_ids, mask, position_ids, cache)


def _step(model, rotate, input_ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor,
          cache) -> torch.Tensor:
    inner = model.model
    hidden = inner.embed_tokens(input_ids)  # (B, 1, H)
    batch = hidden.shape[0]
    cos, sin = inner.rotary_emb(hidden, position_ids)
    # transformers skips the mask when no row has padding (one query attends to every key), else a boolean one
    attn_mask = None if bool(mask.all()) else mask[:, None, None, :].bool()  # (B, 1, 1, T)
    for i, layer in enumerate(inner.layers[: model.config.num_hidden_layers]):
        attn, mlp = layer.self_attn, layer.mlp
        dim, groups = attn.head_dim, attn.num_key_value_groups
        x = layer.input_layernorm(hidden)
        fused = _fused(attn.q_proj, attn.k_proj, attn.v_proj)
        q, k, v = fused.product(x).split(fused.sizes, dim=-1) if fused else (attn.q_proj(x), attn.k_proj(x),
                                                                              attn.v_proj(x))
        q = q.view(batch, 1, -1, dim).transpose(1, 2)  # (B, heads, 1, D)
        k = k.view(batch, 1, -1, dim).transpose(1, 2)  # (B, kv_heads, 1, D)
        v = v.view(batch, 1, -1, dim).transpose(1, 2)
        q, k = rotate(q, k, cos, sin)
        k, v = cache.layers[i].update(k, v)  # (B, kv_heads, T, D)
        if attn_mask is None:
            out = F.scaled_dot_product_attention(q, k, v, scale=attn.scaling, enable_gqa=groups > 1)
        else:  # a query head group per KV head as that head's "positions", as transformers' pack_gqa
            q = q.reshape(batch, q.shape[1] // groups, groups, dim) if groups > 1 else q
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=attn.scaling)
        out = out.reshape(batch, -1, 1, dim).transpose(1, 2).reshape(batch, 1, -1)  # (B, 1, heads * D)
        hidden = hidden + attn.o_proj(out)
        x = layer.post_attention_layernorm(hidden)
        fused = _fused(mlp.gate_proj, mlp.up_proj)
        gate, up = fused.product(x).split(fused.sizes, dim=-1) if fused else (mlp.gate_proj(x), mlp.up_proj(x))
        hidden = hidden + mlp.down_proj(mlp.act_fn(gate) * up)
    return model.lm_head(inner.norm(hidden))[:, -1, :]


def _fused(*projections):
    """The `quantize.FusedProjections` computing exactly these projections in this order, or None."""
    fused = getattr(projections[0], "fused", None)
    if fused is None or len(fused.sizes) != len(projections):
        return None
    ok = all(getattr(p, "fused", None) is fused and p.part == i for i, p in enumerate(projections))
    return fused if ok else None
