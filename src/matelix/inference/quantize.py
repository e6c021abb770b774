"""Weight quantization for serving on a CPU: `quantize_for_serving(model, mode)` swaps every `nn.Linear` (the
layers' projections and the LM head) for a layer with smaller weights:
* "int8" → `Int8Linear`: int8 weights with one fp32 scale per output channel, a quarter of fp32's bytes; a decode
  step (up to `int8_matmul.FEW_ROWS` rows) multiplies through a numba loop with fp32 activations
  (`int8_matmul.py`: why, and its figures), prefill through torch's weight-only kernel
  `torch._weight_int8pack_mm` (bf16 activations, fp32 out);
* "fp16" → `Fp16Linear`: fp16 weights, fp32 activations and accumulation, through fbgemm's
  `quantized::linear_dynamic_fp16` (shipped with torch): half of fp32's bytes, and the fastest kernel here
  once several requests decode together.
In both, bias-free q/k/v and gate/up projections of a layer share one quantized matrix (`FusedProjections`):
fewer, larger products, the same logits bit for bit.

    check_quantization("int8", "cpu")           # raises catalog.ModelRefused (param "quantization")
    model = quantize_for_serving(model, "int8")  # in place; "none" leaves the model as it is
    packed_weight_bytes(model)                   # bytes of the quantized weights and scales

Decode on a CPU reads every weight once per step, so at one request it is bound by memory bandwidth; with
many requests in a batch it becomes bound by the kernel's arithmetic. Measured on the development machine
(AMD EPYC, 2 cores, AVX2 only, no AVX-512 or bf16 instructions; torch 2.13, 2 threads, quiet): the time of
every linear layer of SmolLM2-135M-Instruct (210 projections + the 49k-row head) for one decode step of
M rows, M = 1 / 4 / 16 (`linear_step_ms` in `bench/cpu_serving.py` reprints the three served formats):
* fp32 `F.linear` (MKL): 68 / 137 / 130 ms — MKL runs a one-row product on one thread;
* int8 `_weight_int8pack_mm`: 29 / 40 / 98 ms (its AVX2 code converts to bf16 and is compute-bound);
* fp16 fbgemm `linear_dynamic_fp16`: 29 / 33 / 63 ms;
and later, with q/k/v and gate/up shared (121 products) and int8's decode rows through the numba loop, in a
full bench run (2026-12-02, the VM busier): fp32 83 / 178 / 193, int8 22 / 33 / 93, fp16 23 / 25 / 54 ms;
and, once, on random weights of the same shapes (fp32 / int8 / fp16 there: 80 / 32 / 35 ms at M = 1, 212 /
123 / 74 ms at M = 16), the candidates not served:
* fp16 / bf16 `F.linear` (oneDNN, activations cast to 16 bits too): 31–33 / 72–79 / 256–304 ms;
* oneDNN fp32 with prepacked weights (`mkldnn._linear_pointwise`): 67 / 77 / 120 ms.
Quality: int8 keeps 96.6% of fp32's greedy tokens teacher-forced, held-out loss +0.34%; fp16 weights with fp32
activations are exact to the printed digits (`bench/cpu_serving.py` measures both). Candidates not served:
* `torch.ao.quantization.quantize_dynamic` with int8 (fbgemm, int8 weights *and* activations, per tensor):
  fast, but the activations' outliers ruin it here: loss +43%, 44% of tokens (per-channel weights too);
* torchao 0.18 `Int8WeightOnlyConfig`: slower than fp32 (its CPU path dequantizes the weight in plain torch
  ops every call); `Int8DynamicActivationInt8WeightConfig` slower still and with the same activation
  problem; its int4 CPU layout is a prototype;
* optimum-quanto 0.2.7 `qint8`: about 0.3x fp32 (no fused CPU kernel for these shapes);
* `torch._weight_int4pack_mm_for_cpu` (int4, bf16 activations), timed per layer shape: faster than int8 only
  on the 49k-row LM head, no faster on the layers' projections, and a 4-bit grid costs quality: not offered.
Quantization is refused on CUDA/MPS, which have fast half-precision paths of their own.
"""

from __future__ import annotations

from typing import get_args

import torch

from matelix.catalog import ModelRefused
from matelix.settings import Quantization

QUANTIZATION_MODES = get_args(Quantization)


def check_quantization(mode: str, device: str | None) -> None:
    """Raise ModelRefused (a 400 naming `quantization`) unless `mode` can be served on `device` (None: not
    known yet, only the mode is checked)."""
    if mode not in QUANTIZATION_MODES:
        raise ModelRefused(f"quantization must be one of {', '.join(QUANTIZATION_MODES)}, got {mode!r}",
                           "quantization")
    if mode != "none" and device not in (None, "cpu"):
        raise ModelRefused(f"quantization {mode!r} runs on the CPU only (CPU kernels), not on {device!r}",
                           "quantization")


def _int8_matmul():
    """The int8 decode-step loop's module, imported when first used: numba takes ~0.5 s to import."""
    from matelix.inference import int8_matmul

    return int8_matmul


class Int8Linear(torch.nn.Module):
    """y = x W^T (+ b) with W stored as int8 rows times a per-row scale: (out, in) int8 + (out,) scales."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()  # (out, in)
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # (out,)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach().clone(),
                                                                        requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)  # (N, in)
        loop = _int8_matmul()
        if flat.shape[0] <= loop.FEW_ROWS:  # a decode step: the loop reads the weights at the machine's bandwidth
            y = loop.few_rows_product(flat.float(), self.weight_int8, self.scale).to(x.dtype)
        else:
            y = torch._weight_int8pack_mm(flat.to(torch.bfloat16), self.weight_int8,
                                          self.scale.to(torch.bfloat16)).to(x.dtype)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class Fp16Linear(torch.nn.Module):
    """y = x W^T (+ b) with W stored in fp16 inside fbgemm's packed format; x and y stay fp32."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_bytes = weight.numel() * 2
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self._packed = torch.ops.quantized.linear_prepack_fp16(weight, bias)  # fp16 copy; fp32 weight freed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # the usual case: no conversions (each costs a dispatch per layer and step)
            return torch.ops.quantized.linear_dynamic_fp16(x, self._packed)
        return torch.ops.quantized.linear_dynamic_fp16(x.float(), self._packed).to(x.dtype)


class FusedProjections(torch.nn.Module):
    """Bias-free projections of one input (q/k/v, gate/up) as one quantized layer over their stacked weights: one
    product instead of several per layer and step (SmolLM2: 211 → 121 kernel calls a decode step; fp16, lean
    step medians in a probe: 64.6 → 59.4 ms at 1 row, 140.6 → 122.2 ms at 16; int8: no change beyond the
    noise; logits bitwise equal on this AVX2 CPU, equal to fp32 rounding on an AVX-512 one, whose kernels split
    the columns by the matrix's width). `product(x)` is the whole product (the
    lean decode step splits it itself); each projection is a `ProjectionPart` reading its columns through
    `part(x, i)`: the first call computes the product for `x` and keeps it until every part has been read once,
    so the projections of one input cost one product and nothing is kept after the layer."""

    def __init__(self, linears: list[torch.nn.Linear], layer: type[torch.nn.Module]):
        super().__init__()
        stacked = torch.nn.Linear(linears[0].in_features, sum(lin.out_features for lin in linears), bias=False)
        stacked.weight = torch.nn.Parameter(torch.cat([lin.weight.detach() for lin in linears]), requires_grad=False)
        self.layer = layer(stacked)
        self.sizes = [lin.out_features for lin in linears]
        self._input: torch.Tensor | None = None
        self._parts: tuple[torch.Tensor, ...] = ()
        self._unread: set[int] = set()

    def product(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if self._input is not x or index not in self._unread:
            self._input, self._unread = x, set(range(len(self.sizes)))
            self._parts = self.layer(x).split(self.sizes, dim=-1)
        self._unread.discard(index)
        out = self._parts[index]
        if not self._unread:  # every projection has its part: keep nothing alive until the next call
            self._input, self._parts = None, ()
        return out


class ProjectionPart(torch.nn.Module):
    """One projection of a `FusedProjections` (which its parent module holds): its columns of the product."""

    def __init__(self, fused: FusedProjections, part: int, in_features: int):
        super().__init__()
        object.__setattr__(self, "fused", fused)  # not a submodule: the parent owns it once for all parts
        self.part, self.in_features, self.out_features = part, in_features, fused.sizes[part]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.part(x, self.part)


LAYERS = {"int8": Int8Linear, "fp16": Fp16Linear}


FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # projections of one input, Llama-style


def quantize_for_serving(model, mode: str):
    """The model with every linear layer replaced by a quantized one (in place); `mode` "none" is a no-op.
    Bias-free q/k/v and gate/up projections of a module become parts of one quantized layer
    (`FusedProjections`, held by the module as `fused_q_proj` / `fused_gate_proj`)."""
    if mode == "none":
        return model
    if mode == "int8":
        _int8_matmul().warm_up()  # compile the decode-step loop now, not on the first request
    layer = LAYERS[mode]
    for module in list(model.modules()):
        for names in FUSED:
            linears = [getattr(module, n, None) for n in names]
            if all(type(lin) is torch.nn.Linear and lin.bias is None for lin in linears) \
                    and len({lin.in_features for lin in linears}) == 1:
                fused = FusedProjections(linears, layer)
                setattr(module, f"fused_{names[0]}", fused)
                for i, (name, lin) in enumerate(zip(names, linears, strict=True)):
                    setattr(module, name, ProjectionPart(fused, i, lin.in_features))
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, layer(child))
    return model


def packed_weight_bytes(model) -> int:
    """Bytes of the quantized weights (and int8's scales) of the model's quantized layers."""
    total = 0
    for module in model.modules():
        if isinstance(module, Int8Linear):
            total += sum(b.numel() * b.element_size() for b in module.buffers(recurse=False))
        elif isinstance(module, Fp16Linear):
            total += module.weight_bytes
    return total


def opaque_weight_bytes(model) -> int:
    """Bytes of weights held outside the model's parameters and buffers (fbgemm's packed fp16 matrices)."""
    return sum(m.weight_bytes for m in model.modules() if isinstance(m, Fp16Linear))
