"""Weight quantization for serving on a CPU: `quantize_for_serving(model, "int8")` swaps every `nn.Linear`
(the layers' projections and the LM head) for `Int8Linear`: int8 weights with one scale per output channel,
multiplied by torch's own weight-only kernel `torch._weight_int8pack_mm` (bf16 activations, fp32 out).

    check_quantization("int8", "cpu")           # raises catalog.ModelRefused (param "quantization")
    model = quantize_for_serving(model, "int8")  # in place; "none" leaves the model as it is
    packed_weight_bytes(model)                   # bytes of the int8 weights and scales

Decode on a CPU reads every weight once per step, so it is bound by memory bandwidth: int8 weights are a
quarter of fp32's bytes. Candidates measured on the development machine (AMD EPYC, 2 cores, AVX2 only, no
AVX-512 or bf16 instructions; torch 2.13; SmolLM2-135M-Instruct, one torch thread; the machine was shared
and busy, so the figure compared is CPU time per decoded token, at batch 1 / batch 16 against fp32, with
the held-out loss and the share of fp32's greedy tokens kept, teacher-forced):
* this module (`_weight_int8pack_mm`, weight-only): 1.45x / 1.13x fp32, loss +0.45%, 97% of tokens;
* `torch.ao.quantization.quantize_dynamic` (fbgemm, int8 weights *and* activations, per tensor): 2.0x /
  2.7x fp32, but the activations' outliers ruin it here: loss +43%, 44% of tokens (per-channel weights
  too) — not served;
* the same with `dtype=torch.float16` (fbgemm fp16 weights, fp32 activations): exact (loss +0.00%, 100% of
  tokens) and 1.2x / 1.45x fp32, but 16-bit: half of int8's gain where it counts, at batch 1;
* torchao 0.18 `Int8WeightOnlyConfig`: slower than fp32 (its CPU path dequantizes the weight in plain torch
  ops every call); `Int8DynamicActivationInt8WeightConfig` slower still and with the same activation
  problem; its int4 CPU layout is a prototype;
* optimum-quanto 0.2.7 `qint8`: about 0.3x fp32 (no fused CPU kernel for these shapes);
* `torch._weight_int4pack_mm_for_cpu` (int4, bf16 activations), timed per layer shape: faster than int8 only
  on the 49k-row LM head, no faster on the layers' projections, and a 4-bit grid costs quality: not offered.
`bench/cpu_serving.py` reruns the comparison that matters (fp32 vs int8 through the lab) and checks quality
on a probe set and held-out text. bf16 activations are exact enough here (the residual stream stays fp32;
only each projection's input is rounded), and the kernel has AVX2 code paths. int8 is refused on CUDA/MPS,
which have fast half-precision paths of their own.
"""

from __future__ import annotations

import torch

from matelix.catalog import ModelRefused

QUANTIZATION_MODES = ("none", "int8")


def check_quantization(mode: str, device: str | None) -> None:
    """Raise ModelRefused (a 400 naming `quantization`) unless `mode` can be served on `device` (None: not
    known yet, only the mode is checked)."""
    if mode not in QUANTIZATION_MODES:
        raise ModelRefused(f"quantization must be one of {', '.join(QUANTIZATION_MODES)}, got {mode!r}",
                           "quantization")
    if mode != "none" and device not in (None, "cpu"):
        raise ModelRefused(f"quantization {mode!r} runs on the CPU only (fbgemm kernels), not on {device!r}",
                           "quantization")


class Int8Linear(torch.nn.Module):
    """y = x W^T (+ b) with W stored as int8 rows times a per-row scale: (out, in) int8 + (out,) scales."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()  # (out, in)
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # (out,)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach().clone(),
                                                                        requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (N, in)
        y = torch._weight_int8pack_mm(flat, self.weight_int8, self.scale).to(x.dtype)  # (N, out)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


def quantize_for_serving(model, mode: str):
    """The model with every linear layer replaced by an int8 one (in place); `mode` "none" is a no-op."""
    if mode == "none":
        return model
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, Int8Linear(child))
    return model


def packed_weight_bytes(model) -> int:
    """Bytes of the int8 weights and their scales (buffers of the quantized layers)."""
    return sum(b.numel() * b.element_size() for m in model.modules() if isinstance(m, Int8Linear)
               for b in m.buffers(recurse=False))
