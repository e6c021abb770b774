"""The decode step of a Llama-style model with int8 weights, each layer in two loops compiled by numba.

    step = int8_decode_step_for(model)                     # None: not an int8 model this module can run
    logits = step(input_ids, mask, position_ids, cache)    # (B, 1) new tokens, (B, T) 0/1 mask → (B, V)

With int8 weights the products of a one-row decode step take about half of the lean step (`decode_step.py`,
`int8_matmul.py`); the rest is eager PyTorch between them: per layer two RMS norms, the rotary embedding,
reshapes, attention, the activation and the residual adds, some twenty small operator calls that each cost a
dispatch and a trip through torch's thread pool (~600 a step on SmolLM2's 30 layers). Here each layer is two
compiled calls: (1) norm, the fused q/k/v product and the rotary embedding; (2) attention over the cache, the
output product and residual, norm, the fused gate/up product, SiLU, the down product and residual. Between the
two the new keys and values go into the engine's cache through its own `update` (`kv_cache.GrowingLayer`, in
place), so the cache, prefix caching and the engine's re-padding work as before. The embedding, the rotary
table, the final norm and the LM head stay in torch (one call each a step).

Hand-written because no maintained library runs a quantized Llama layer on an AVX2 CPU over an external,
re-padded batch cache: llama.cpp does it inside its own runtime and file format, torch's compiler needs a fixed
batch (see `decode_step.py`). The arithmetic is the model's own in fp32 (the int8 products of `int8_matmul`, RMS
norm, rotary embedding, softmax attention, SiLU) in another order, so the logits agree with the lean step to
fp32 rounding, not bitwise (tested); each row is computed the same way whatever the batch, so a row of a
batch equals the same row alone. Used for up to `int8_matmul.FEW_ROWS` rows and no attached adapters (the
engine decides); other cases keep the lean step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numba import prange

from matelix.inference.decode_step import decode_step_for
from matelix.inference.int8_matmul import _product, compile_loop, use_threads
from matelix.inference.quantize import FusedProjections, Int8Linear


@compile_loop(parallel=False)
def _rms_norm(hidden, weight, eps, out):  # pragma: no cover - compiled by numba
    """out = weight * hidden / sqrt(mean(hidden²) + eps), per row (as transformers' Llama RMSNorm, in fp32)."""
    width = hidden.shape[1]
    for m in range(hidden.shape[0]):
        total = np.float32(0)
        for j in range(width):
            total += hidden[m, j] * hidden[m, j]
        inverse = np.float32(1) / np.sqrt(total / np.float32(width) + eps)
        for j in range(width):
            out[m, j] = weight[j] * (hidden[m, j] * inverse)


@compile_loop(parallel=False)  # its product is a parallel loop of its own
def _attention_in(hidden, norm, eps, weight, scale, cos, sin, x, qkv, q, k, v):  # pragma: no cover - numba
    """Norm, the fused q/k/v product and the rotary embedding (rotate-half form) of one layer: fills q (M, heads,
    D), k and v (M, kv_heads, D); x and qkv are scratch."""
    _rms_norm(hidden, norm, eps, x)
    _product(weight, scale, x, qkv)
    heads, kv_heads, dim = q.shape[1], k.shape[1], q.shape[2]
    half = dim // 2
    for m in range(q.shape[0]):
        for h in range(heads + kv_heads):
            base = h * dim
            for j in range(half):
                a, b = qkv[m, base + j], qkv[m, base + j + half]
                first = a * cos[m, j] - b * sin[m, j]
                second = b * cos[m, j + half] + a * sin[m, j + half]
                if h < heads:
                    q[m, h, j], q[m, h, j + half] = first, second
                else:
                    k[m, h - heads, j], k[m, h - heads, j + half] = first, second
        base = (heads + kv_heads) * dim
        for h in range(kv_heads):
            for j in range(dim):
                v[m, h, j] = qkv[m, base + h * dim + j]


@compile_loop
def _attention_out_mlp(hidden, q, keys, values, mask, masked, softmax_scale, out_weight, out_scale, norm, eps,
                       gate_up_weight, gate_up_scale, down_weight, down_scale,
                       scores, attended, x, gate_up, act, y):  # pragma: no cover - compiled by numba
    """Attention of q (M, heads, D) over keys/values (M, kv_heads, T, D) (positions with mask 0 skipped when
    `masked`), the output product added to hidden (M, H), norm, gate/up product, SiLU(gate) * up, the down
    product added to hidden. scores (M * heads, T) and the rest are scratch."""
    rows, heads, dim = q.shape
    kv_heads, length = keys.shape[1], keys.shape[2]
    groups = heads // kv_heads
    for row_head in prange(rows * heads):
        m, h = row_head // heads, row_head % heads
        g = h // groups
        top = -np.inf
        for t in range(length):
            if masked and mask[m, t] == 0:
                scores[row_head, t] = -np.inf
                continue
            s = np.float32(0)
            for d in range(dim):
                s += q[m, h, d] * keys[m, g, t, d]
            s *= softmax_scale
            scores[row_head, t] = s
            top = max(top, s)
        total = np.float32(0)
        for t in range(length):
            e = np.float32(0) if scores[row_head, t] == -np.inf else np.exp(scores[row_head, t] - top)
            scores[row_head, t] = e
            total += e
        for d in range(dim):
            attended[m, h * dim + d] = 0
        for t in range(length):
            p = scores[row_head, t] / total
            if p != 0:
                for d in range(dim):
                    attended[m, h * dim + d] += p * values[m, g, t, d]
    _product(out_weight, out_scale, attended, y)
    width = hidden.shape[1]
    for m in range(rows):
        for j in range(width):
            hidden[m, j] += y[m, j]
    _rms_norm(hidden, norm, eps, x)
    _product(gate_up_weight, gate_up_scale, x, gate_up)
    inner = act.shape[1]
    for m in range(rows):
        for j in range(inner):
            gate = gate_up[m, j]
            act[m, j] = gate / (np.float32(1) + np.exp(-gate)) * gate_up[m, inner + j]
    _product(down_weight, down_scale, act, y)
    for m in range(rows):
        for j in range(width):
            hidden[m, j] += y[m, j]


@dataclass(frozen=True)
class _Layer:
    """One decoder layer's weights as numpy views (no copies) and its sizes."""
    norm: np.ndarray
    norm_eps: float
    qkv: Int8Linear
    out: Int8Linear
    post_norm: np.ndarray
    post_norm_eps: float
    gate_up: Int8Linear
    down: Int8Linear
    heads: int
    kv_heads: int
    dim: int
    scaling: float


def _fused_int8(fused, count: int) -> Int8Linear | None:
    ok = isinstance(fused, FusedProjections) and len(fused.sizes) == count and type(fused.layer) is Int8Linear
    return fused.layer if ok else None


def _layer(layer, config) -> _Layer | None:
    attn, mlp = layer.self_attn, layer.mlp
    qkv = _fused_int8(getattr(attn, "fused_q_proj", None), 3)
    gate_up = _fused_int8(getattr(mlp, "fused_gate_proj", None), 2)
    norms = (layer.input_layernorm, layer.post_attention_layernorm)
    if qkv is None or gate_up is None or type(attn.o_proj) is not Int8Linear or type(mlp.down_proj) is not \
            Int8Linear or attn.o_proj.bias is not None or mlp.down_proj.bias is not None:
        return None
    if any(type(n).__name__ not in ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm") for n in norms):
        return None
    heads, kv_heads, dim = config.num_attention_heads, config.num_key_value_heads, attn.head_dim
    if qkv.out_features != (heads + 2 * kv_heads) * dim or dim % 2 or heads % kv_heads:
        return None
    return _Layer(norms[0].weight.detach().numpy(), float(norms[0].variance_epsilon), qkv, attn.o_proj,
                  norms[1].weight.detach().numpy(), float(norms[1].variance_epsilon), gate_up, mlp.down_proj,
                  heads, kv_heads, dim, float(attn.scaling))


def int8_decode_step_for(model):
    """The compiled decode step for an fp32 Llama-style `model` whose layers `quantize_for_serving(..., "int8")`
    replaced (fused q/k/v and gate/up, plain RMS norms, SiLU, default rotary embedding), or None."""
    if decode_step_for(model) is None:  # the architectures, attention and cache layouts the lean step knows
        return None
    config = model.config
    if getattr(config, "hidden_act", None) != "silu" or model.dtype != torch.float32:
        return None
    layers = [_layer(layer, config) for layer in model.model.layers[: config.num_hidden_layers]]
    if not layers or any(layer is None for layer in layers):
        return None
    _warm_up(layers[0])
    return lambda input_ids, mask, position_ids, cache: _step(model, layers, input_ids, mask, position_ids, cache)


def _step(model, layers: list[_Layer], input_ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor,
          cache) -> torch.Tensor:
    with torch.inference_mode():
        inner = model.model
        hidden = inner.embed_tokens(input_ids)  # (B, 1, H), a new tensor: updated in place below
        rows = hidden.shape[0]
        cos, sin = (t[:, 0].contiguous().numpy() for t in inner.rotary_emb(hidden, position_ids))  # (B, D)
        masked = not bool(mask.all())
        mask_np = mask.to(torch.int64).numpy()
        first = layers[0]
        h = hidden.view(rows, -1).numpy()
        q = np.empty((rows, first.heads, first.dim), np.float32)
        k = torch.empty((rows, first.kv_heads, 1, first.dim))  # what the cache's update takes
        v = torch.empty_like(k)
        scratch = _Scratch(rows, h.shape[1], first, mask.shape[1])
        use_threads()
        for i, layer in enumerate(layers):
            _attention_in(h, layer.norm, np.float32(layer.norm_eps), layer.qkv.weight_int8.numpy(),
                          layer.qkv.scale.numpy(), cos, sin, scratch.x, scratch.qkv, q, k.numpy()[:, :, 0],
                          v.numpy()[:, :, 0])
            keys, values = cache.layers[i].update(k, v)  # (B, kv_heads, T, D) views into the cache
            _attention_out_mlp(h, q, keys.numpy(), values.numpy(), mask_np, masked, np.float32(layer.scaling),
                               layer.out.weight_int8.numpy(), layer.out.scale.numpy(), layer.post_norm,
                               np.float32(layer.post_norm_eps), layer.gate_up.weight_int8.numpy(),
                               layer.gate_up.scale.numpy(), layer.down.weight_int8.numpy(), layer.down.scale.numpy(),
                               scratch.scores, scratch.attended, scratch.x, scratch.gate_up, scratch.act, scratch.y)
        return model.lm_head(inner.norm(hidden))[:, -1, :]


class _Scratch:
    """Per-step work arrays of the compiled loops (allocated once a step, shared by the layers)."""

    def __init__(self, rows: int, width: int, layer: _Layer, length: int):
        self.x = np.empty((rows, width), np.float32)
        self.qkv = np.empty((rows, layer.qkv.out_features), np.float32)
        self.scores = np.empty((rows * layer.heads, length), np.float32)
        self.attended = np.empty((rows, layer.heads * layer.dim), np.float32)
        self.gate_up = np.empty((rows, layer.gate_up.out_features), np.float32)
        self.act = np.empty((rows, layer.gate_up.out_features // 2), np.float32)
        self.y = np.empty((rows, width), np.float32)


def _warm_up(layer: _Layer) -> None:
    """Compile the loops now (model load) for the array layouts a step meets: a cache that is a fresh tensor
    (contiguous) and one that is a view into a larger buffer (strided)."""
    width = layer.norm.shape[0]
    hidden = np.zeros((1, width), np.float32)
    q = np.zeros((1, layer.heads, layer.dim), np.float32)
    k = np.zeros((1, layer.kv_heads, layer.dim), np.float32)
    table = np.ones((1, layer.dim), np.float32)
    scratch = _Scratch(1, width, layer, 2)
    use_threads()
    _attention_in(hidden, layer.norm, np.float32(layer.norm_eps), layer.qkv.weight_int8.numpy(),
                  layer.qkv.scale.numpy(), table, table, scratch.x, scratch.qkv, q, k, k.copy())
    buffer = np.zeros((1, layer.kv_heads, 4, layer.dim), np.float32)
    for keys in (buffer[:, :, :2], np.ascontiguousarray(buffer[:, :, :2])):
        _attention_out_mlp(hidden, q, keys, keys, np.ones((1, 2), np.int64), False, np.float32(1 / math.sqrt(2)),
                           layer.out.weight_int8.numpy(), layer.out.scale.numpy(), layer.post_norm,
                           np.float32(layer.post_norm_eps), layer.gate_up.weight_int8.numpy(),
                           layer.gate_up.scale.numpy(), layer.down.weight_int8.numpy(), layer.down.scale.numpy(),
                           scratch.scores, scratch.attended, scratch.x, scratch.gate_up, scratch.act, scratch.y)
