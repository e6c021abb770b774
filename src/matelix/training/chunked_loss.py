"""Causal-LM loss without the full logits: the output head and cross-entropy computed chunk by chunk.

With a 49k-entry vocabulary the logits are the largest tensors of a training step: a batch of 4 × 512
tokens holds 2048 × 49152 fp32 logits (400 MB), and autograd keeps them, their softmax and their gradient.
Here only positions that carry a label are projected (assistant-only loss trains a fraction of the
tokens), in chunks of `CHUNK` rows; the forward keeps only the hidden states and the backward recomputes
each chunk's logits. Written by hand because the maintained fused kernels for this (Liger's
fused-linear-cross-entropy, Apple's cut-cross-entropy) are Triton/CUDA only, and this lab trains on CPUs.
"""

from __future__ import annotations

import torch

IGNORE = -100
CHUNK = 1024  # rows per head projection: 1024 × 49152 fp32 = 200 MB at a time


class _LinearCrossEntropy(torch.autograd.Function):
    """sum over rows of -log softmax(hidden @ weight.T)[target]; gradients for hidden and weight."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.shape[0], CHUNK):
            h = hidden[start:start + CHUNK]  # (C, H)
            logits = (h @ weight.t()).float()  # (C, V)
            t = targets[start:start + CHUNK]
            total += (torch.logsumexp(logits, dim=-1) - logits.gather(1, t[:, None]).squeeze(1)).sum()
        ctx.save_for_backward(hidden, weight, targets)
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, targets = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for start in range(0, hidden.shape[0], CHUNK):
            h = hidden[start:start + CHUNK]
            logits = (h @ weight.t()).float()
            probs = torch.softmax(logits, dim=-1)  # d(loss)/d(logits) = softmax - onehot
            probs[torch.arange(h.shape[0]), targets[start:start + CHUNK]] -= 1
            probs = (probs * grad_out).to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[start:start + CHUNK] = probs @ weight
            if grad_weight is not None:
                grad_weight += (probs.t() @ h).float()
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None


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
