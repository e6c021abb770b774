"""The decode step of a Llama-style model on the CPU, each layer in two loops compiled by numba.

    step = compiled_decode_step_for(model)                 # None: not a model this module can run
    logits = step(input_ids, mask, position_ids, cache)    # (B, 1) new tokens, (B, T) 0/1 mask → (B, V)

For fp32 weights and int8 weights (`quantize.Int8Linear`). A one-row decode step reads every weight once, and
two costs keep the lean step (`decode_step.py`) from the machine's bandwidth: its products (MKL runs a one-row
fp32 product on one thread; torch's int8 kernel converts to bf16, which AVX2 CPUs lack), and eager PyTorch
between them: per layer two RMS norms, the rotary embedding, reshapes, attention, the activation and residual
adds, some twenty small operator calls that each cost a dispatch and a trip through torch's thread pool (~600 a
step on SmolLM2's 30 layers). Here each layer is two compiled calls: (1) norm, the q/k/v products and the rotary
embedding; (2) attention over the cache, the output product and residual, norm, the gate/up products, SiLU, the
down product and residual; the products are `int8_matmul`'s loop (parallel over output channels, fp32
activations; fp32 weights go through the same loop with unit scales). Between the two calls the new keys and
values go into the engine's cache through its own `update` (`kv_cache.GrowingLayer`, in place), so the cache,
prefix caching and the engine's re-padding work as before. The embedding and the rotary table stay in torch;
the final norm and the LM head are compiled too.

Hand-written because no maintained library runs a Llama layer on an AVX2 CPU over an external, re-padded
batch cache: llama.cpp does it inside its own runtime and file format, torch's compiler needs a fixed batch
(see `decode_step.py`). The arithmetic is the model's own in fp32 (products with the weights and their scales,
RMS norm, rotary embedding, softmax attention, SiLU) in another order, so the logits agree with the lean step to
fp32 rounding, not bitwise (tested); each row is computed the same way whatever the batch, so a row of a
batch equals the same row alone. The engine uses it for up to `ROWS[kind]` rows (where it measured faster than
the lean step, `bench/cpu_serving.py`) and no attached adapters; other cases keep the lean step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numba import prange

from matelix.inference.decode_step import decode_step_for
from matelix.inference.int8_matmul import compile_loop, launches, products, use_threads
from matelix.inference.quantize import FusedProjections, Int8Linear

# Most rows a step runs here, per weight kind (more go through the lean step): up to where this step measured
# faster than the lean one (SmolLM2, 64-token cache, alternating; `bench/cpu_serving.py` prints both): int8
# 42.5 → 22.1 ms at 1 row, 52.3 → 39.2 at 4, 146.7 → 154.7 at 16 (even), 364.6 → 256.3 at 32 (the lean step's
# products switch to torch's kernel beyond int8_matmul.FEW_ROWS); fp32 117.1 → 41.4 ms at 1 row, 201.9 → 64.9
# at 4, 241.8 → 170.7 at 16, 376.9 → 371.2 at 32.
ROWS = {"int8": 32, "fp32": 16}


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
def _attention_in(hidden, norm, eps, wq, sq, wk, sk, wv, sv, cos, sin, x, qkv, q, k, v):  # pragma: no cover
    """Norm, the q/k/v products and the rotary embedding (rotate-half form) of one layer: fills q (M, heads, D),
    k and v (M, kv_heads, D); x and qkv are scratch."""
    _rms_norm(hidden, norm, eps, x)
    products(x, wq, sq, wk, sk, wv, sv, qkv)
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
def _attention_out_mlp(hidden, q, keys, values, mask, masked, softmax_scale, wo, so, norm, eps, wg, sg, wu, su,
                       wd, sd, none_w, none_s, scores, attended, x, gate_up, act, y):  # pragma: no cover - numba
    """Attention of q (M, heads, D) over keys/values (M, kv_heads, T, D) (positions with mask 0 skipped when
    `masked`), the output product added to hidden (M, H), norm, gate/up products, SiLU(gate) * up, the down
    product added to hidden. none_w/none_s: a weight with no rows (for single products); the rest is scratch."""
    rows, heads, dim = q.shape
    kv_heads, length = keys.shape[1], keys.shape[2]
    groups = heads // kv_heads
    for index in prange(rows * heads):
        row_head = np.int64(index)
        m, h = row_head // heads, row_head % heads
        g = h // groups
        # from the row's first position it attends to: a left-padded row then sums its softmax over the same
        # run of positions as the row alone (fastmath groups a sum into vector lanes by the index from the
        # loop's start; with AVX-512's wider lanes the padding would otherwise regroup it)
        first = 0
        if masked:
            while first < length - 1 and mask[m, first] == 0:
                first += 1
        top = np.float32(-np.inf)
        for t in range(first, length):
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
        for t in range(first, length):
            e = np.float32(0) if scores[row_head, t] == -np.inf else np.exp(scores[row_head, t] - top)
            scores[row_head, t] = e
            total += e
        for d in range(dim):
            attended[m, h * dim + d] = 0
        for t in range(first, length):
            p = scores[row_head, t] / total
            if p != 0:
                for d in range(dim):
                    attended[m, h * dim + d] += p * values[m, g, t, d]
    products(attended, wo, so, none_w, none_s, none_w, none_s, y)
    width = hidden.shape[1]
    for m in range(rows):
        for j in range(width):
            hidden[m, j] += y[m, j]
    _rms_norm(hidden, norm, eps, x)
    products(x, wg, sg, wu, su, none_w, none_s, gate_up)
    inner = act.shape[1]
    for m in range(rows):
        for j in range(inner):
            gate = gate_up[m, j]
            act[m, j] = gate / (np.float32(1) + np.exp(-gate)) * gate_up[m, inner + j]
    products(act, wd, sd, none_w, none_s, none_w, none_s, y)
    for m in range(rows):
        for j in range(width):
            hidden[m, j] += y[m, j]


@compile_loop(parallel=False)
def _head(hidden, norm, eps, weight, scale, none_w, none_s, x, logits):  # pragma: no cover - compiled by numba
    """The final norm and the LM head: logits (M, V)."""
    _rms_norm(hidden, norm, eps, x)
    products(x, weight, scale, none_w, none_s, none_w, none_s, logits)


@dataclass(frozen=True)
class _Projection:
    """A weight (out, in) (int8 or fp32) and its per-output scales (ones for fp32), as numpy views."""
    weight: np.ndarray
    scale: np.ndarray

    @property
    def rows(self) -> int:
        return self.weight.shape[0]


@dataclass(frozen=True)
class _Layer:
    norm: np.ndarray
    norm_eps: np.float32
    q: _Projection
    k: _Projection
    v: _Projection
    out: _Projection
    post_norm: np.ndarray
    post_norm_eps: np.float32
    gate: _Projection
    up: _Projection
    down: _Projection
    heads: int
    kv_heads: int
    dim: int
    scaling: np.float32


def _plain(module, kind: str) -> _Projection | None:
    """A bias-free projection of `kind` ("int8": Int8Linear, "fp32": nn.Linear in fp32) as numpy views."""
    if kind == "int8" and type(module) is Int8Linear and module.bias is None:
        return _Projection(module.weight_int8.numpy(), module.scale.numpy())
    if kind == "fp32" and type(module) is torch.nn.Linear and module.bias is None \
            and module.weight.dtype == torch.float32:
        weight = module.weight.detach().numpy()
        return _Projection(weight, np.ones(weight.shape[0], np.float32))
    return None


def _parts(module, names: tuple[str, ...], kind: str) -> list[_Projection] | None:
    """The projections `names` of `module`: row slices of their shared int8 matrix, or each own fp32 weight."""
    fused = getattr(module, f"fused_{names[0]}", None)
    if kind == "int8":
        if not isinstance(fused, FusedProjections) or len(fused.sizes) != len(names):
            return None
        whole = _plain(fused.layer, kind)
        if whole is None:
            return None
        bounds = np.cumsum([0, *fused.sizes])
        return [_Projection(whole.weight[a:b], whole.scale[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    parts = [_plain(getattr(module, n, None), kind) for n in names]
    return None if fused is not None or any(p is None for p in parts) else parts


NORMS = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm")


def _plain_norm(norm) -> bool:
    """An RMS norm of the kind `_rms_norm` computes, with fp32 weights."""
    return type(norm).__name__ in NORMS and norm.weight.dtype == torch.float32


def _layer(layer, config, kind: str) -> _Layer | None:
    attn, mlp = layer.self_attn, layer.mlp
    qkv, gate_up = _parts(attn, ("q_proj", "k_proj", "v_proj"), kind), _parts(mlp, ("gate_proj", "up_proj"), kind)
    out, down = _plain(attn.o_proj, kind), _plain(mlp.down_proj, kind)
    norms = (layer.input_layernorm, layer.post_attention_layernorm)
    if qkv is None or gate_up is None or out is None or down is None or not all(map(_plain_norm, norms)):
        return None
    heads, kv_heads, dim = config.num_attention_heads, config.num_key_value_heads, attn.head_dim
    if [p.rows for p in qkv] != [heads * dim, kv_heads * dim, kv_heads * dim] or dim % 2 or heads % kv_heads:
        return None
    return _Layer(norms[0].weight.detach().numpy(), np.float32(norms[0].variance_epsilon), *qkv, out,
                  norms[1].weight.detach().numpy(), np.float32(norms[1].variance_epsilon), *gate_up, down,
                  heads, kv_heads, dim, np.float32(attn.scaling))


@dataclass(frozen=True)
class Plan:
    """What a compiled step reads: the layers, the final norm and the head, and the weight kind."""
    kind: str
    layers: list[_Layer]
    norm: np.ndarray
    norm_eps: np.float32
    head: _Projection
    none: _Projection  # a weight with no rows, for products with fewer than three parts


def weight_kind(model) -> str | None:
    """"int8" for a model `quantize_for_serving` made int8, "fp32" for plain fp32 weights on the CPU, else None."""
    if any(isinstance(m, Int8Linear) for m in model.modules()):
        return "int8"
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.dtype == torch.float32 and parameter.device.type == "cpu":
        return "fp32"
    return None


def compiled_decode_step_for(model):
    """The compiled decode step for a CPU model whose weights are fp32 or int8 (`quantize_for_serving`) and that
    the lean step runs (Llama, Mistral, Qwen2 without q/k/v biases; full SDPA attention), with plain RMS norms,
    SiLU and bias-free projections; else None. Its `.kind` is "int8" or "fp32"."""
    kind = weight_kind(model)
    if kind is None or decode_step_for(model) is None:
        return None
    config = model.config
    if getattr(config, "hidden_act", None) != "silu" or not _plain_norm(model.model.norm):
        return None
    layers = [_layer(layer, config, kind) for layer in model.model.layers[: config.num_hidden_layers]]
    head = _plain(model.lm_head, kind)
    if not layers or any(layer is None for layer in layers) or head is None:
        return None
    none = _Projection(np.empty((0, head.weight.shape[1]), head.weight.dtype), np.empty(0, np.float32))
    plan = Plan(kind, layers, model.model.norm.weight.detach().numpy(), np.float32(model.model.norm.variance_epsilon),
                head, none)
    _warm_up(plan)

    def step(input_ids, mask, position_ids, cache):
        return _step(model, plan, input_ids, mask, position_ids, cache)

    step.kind, step.rows = kind, ROWS[kind]  # the engine runs it for at most `rows` rows
    return step


class _Scratch:
    """Per-step work arrays of the compiled loops (allocated once a step, shared by the layers)."""

    def __init__(self, rows: int, width: int, layer: _Layer, length: int):
        self.x = np.empty((rows, width), np.float32)
        self.qkv = np.empty((rows, layer.q.rows + layer.k.rows + layer.v.rows), np.float32)
        self.scores = np.empty((rows * layer.heads, length), np.float32)
        self.attended = np.empty((rows, layer.q.rows), np.float32)
        self.gate_up = np.empty((rows, layer.gate.rows + layer.up.rows), np.float32)
        self.act = np.empty((rows, layer.gate.rows), np.float32)
        self.y = np.empty((rows, width), np.float32)


def _layer_in(layer: _Layer, hidden, cos, sin, scratch: _Scratch, q, k, v) -> None:
    _attention_in(hidden, layer.norm, layer.norm_eps, layer.q.weight, layer.q.scale, layer.k.weight, layer.k.scale,
                  layer.v.weight, layer.v.scale, cos, sin, scratch.x, scratch.qkv, q, k, v)


def _layer_out(layer: _Layer, plan: Plan, hidden, q, keys, values, mask, masked: bool, scratch: _Scratch) -> None:
    _attention_out_mlp(hidden, q, keys, values, mask, masked, layer.scaling, layer.out.weight, layer.out.scale,
                       layer.post_norm, layer.post_norm_eps, layer.gate.weight, layer.gate.scale, layer.up.weight,
                       layer.up.scale, layer.down.weight, layer.down.scale, plan.none.weight, plan.none.scale,
                       scratch.scores, scratch.attended, scratch.x, scratch.gate_up, scratch.act, scratch.y)


def _step(model, plan: Plan, input_ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor,
          cache) -> torch.Tensor:
    with torch.inference_mode():
        inner = model.model
        embedded = inner.embed_tokens(input_ids)  # (B, 1, H), a new tensor
        rows = embedded.shape[0]
        cos, sin = (t[:, 0].contiguous().numpy() for t in inner.rotary_emb(embedded, position_ids))  # (B, D)
        hidden = embedded.view(rows, -1).numpy()  # updated in place, layer by layer
        first = plan.layers[0]
        q = np.empty((rows, first.heads, first.dim), np.float32)
        k = torch.empty((rows, first.kv_heads, 1, first.dim))  # what the cache's update takes
        v = torch.empty_like(k)
        k_np, v_np = k.numpy()[:, :, 0], v.numpy()[:, :, 0]
        scratch = _Scratch(rows, hidden.shape[1], first, mask.shape[1])
        masked = not bool(mask.all())
        mask_np = mask.to(torch.int64).contiguous().numpy()
        use_threads()
        logits = torch.empty((rows, plan.head.rows))
        with launches():
            for i, layer in enumerate(plan.layers):
                _layer_in(layer, hidden, cos, sin, scratch, q, k_np, v_np)
                keys, values = cache.layers[i].update(k, v)  # (B, kv_heads, T, D): copied into the cache
                _layer_out(layer, plan, hidden, q, keys.numpy(), values.numpy(), mask_np, masked, scratch)
            _head(hidden, plan.norm, plan.norm_eps, plan.head.weight, plan.head.scale, plan.none.weight,
                  plan.none.scale, scratch.x, logits.numpy())
        return logits


def _warm_up(plan: Plan) -> None:
    """Compile the loops now (model load) for the array layouts a step meets: a cache that is a fresh tensor
    (contiguous) and one that is a view into a larger buffer (strided). Compiled code is cached on disk."""
    layer = plan.layers[0]
    width = layer.norm.shape[0]
    hidden = np.zeros((1, width), np.float32)
    q = np.zeros((1, layer.heads, layer.dim), np.float32)
    k = np.zeros((1, layer.kv_heads, layer.dim), np.float32)
    table = np.ones((1, layer.dim), np.float32)
    scratch = _Scratch(1, width, layer, 2)
    use_threads()
    with launches():
        _warm_up_calls(plan, layer, hidden, q, k, table, scratch)


def _warm_up_calls(plan: Plan, layer: _Layer, hidden, q, k, table, scratch: _Scratch) -> None:
    _layer_in(layer, hidden, table, table, scratch, q, k, k.copy())
    buffer = np.zeros((1, layer.kv_heads, 4, layer.dim), np.float32)
    for keys in (buffer[:, :, :2], np.ascontiguousarray(buffer[:, :, :2])):
        _layer_out(layer, plan, hidden, q, keys, keys, np.ones((1, 2), np.int64), False, scratch)
    _head(hidden, plan.norm, plan.norm_eps, plan.head.weight, plan.head.scale, plan.none.weight, plan.none.scale,
          scratch.x, np.empty((1, plan.head.rows), np.float32))
