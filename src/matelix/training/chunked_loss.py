"""Causal-LM loss without the full logits: the output head and cross-entropy computed chunk by chunk.

With a 49k-entry vocabulary the logits are the largest tensors of a training step: a batch of 4 × 512
tokens holds 2048 × 49152 fp32 logits (400 MB), and autograd keeps them, their softmax and their gradient.
Here only positions that carry a label are projected (assistant-only loss trains a fraction of the
tokens), in chunks of `CHUNK` rows; each chunk's gradients are computed in the forward while its logits
exist, and only the gradient of the hidden states is kept for the backward (no logits survive a chunk, and
the head is not run twice). Written by hand because the maintained fused kernels for this (Liger's
fused-linear-cross-entropy, Apple's cut-cross-entropy) are Triton/CUDA only, and this lab trains on CPUs.
"""

from __future__ import annotations

import torch

IGNORE = -100
CHUNK = 1024  # rows per head projection: 1024 × 49152 fp32 = 200 MB at a time


class _LinearCrossEntropy(torch.autograd.Function):
    """sum over rows of -log softmax(hidden @ weight.T)[target]; gradients for hidden and weight.

    The gradients are computed in the forward, chunk by chunk, while each chunk's logits exist anyway
    (d loss / d logits = softmax - onehot), and only scaled by the incoming gradient in the backward: the
    backward would otherwise project every chunk through the head a second time. What is kept for the
    backward is the gradient of `hidden` (the size of `hidden`, which no longer needs keeping) and, when the
    head itself trains, the head's gradient (which the backward would allocate anyway)."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        want_hidden, want_weight = hidden.requires_grad, weight.requires_grad
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.shape[0], CHUNK):
            h = hidden[start:start + CHUNK]  # (C, H)
            logits = (h @ weight.t()).float()  # (C, V)
            t = targets[start:start + CHUNK]
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if want_hidden or want_weight:
                probs = torch.exp(logits.sub_(lse[:, None]))  # softmax, in the logits' memory
                probs[torch.arange(h.shape[0]), t] -= 1
                probs = probs.to(hidden.dtype)
                if want_hidden:
                    grad_hidden[start:start + CHUNK] = probs @ weight
                if want_weight:
                    grad_weight += (probs.t() @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype) if want_weight else None)
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (None if grad_hidden is None else grad_hidden * grad_out.to(grad_hidden.dtype),
                None if grad_weight is None else grad_weight * grad_out.to(grad_weight.dtype), None)


def trained_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(keep, targets)`: a (B, T) mask of the positions whose next token carries a label, and those labels
    in the same (row-major) order."""
    nxt = labels[:, 1:]  # (B, T-1): position t predicts token t+1
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = nxt != IGNORE
    return keep, nxt[nxt != IGNORE]


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of `hidden` (N, H) projected by `weight` (V, H) against `targets` (N,)."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0  # keeps every parameter in the graph
    return _LinearCrossEntropy.apply(hidden, weight, targets)
