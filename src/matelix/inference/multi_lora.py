"""Per-row LoRA: many adapters on one base model, each row of a batch through its own adapter.

    slots = LoraSlots()
    slots.add(model, "lora1", {"model.layers.0.self_attn.q_proj": (A, B, scale), ...}, rank=8)  # A (r, in), B (out, r)
    slots.select(["lora1", None, "lora1"])    # before a forward pass: each row's adapter (None = the base)
    model(...)                                # on the same thread
    slots.remove(model, "lora1")

Every targeted `nn.Linear` is replaced by a `MultiLoraLinear` holding the stacked LoRA matrices of every attached
adapter: A (R, in) and B^T (R, out), R the sum of the adapters' ranks, each adapter in the same columns of every
layer (zeros where it does not target the layer). One step computes `base(x) + ((x @ A^T) * mask) @ B^T`, the mask
(rows, R) keeping each row's own adapter columns: three tensor ops per layer, whatever the number of adapters.

Hand-written rather than peft's mixed-adapter batches (`adapter_names`): peft loops over the adapters present in
a batch in every LoRA layer (a gather, two matmuls and an indexed add each), and at 16 rows over 8 adapters that
decoded a ~27M Llama at 0.40x the plain model's speed where the stacked form ran at 0.68x (`bench/lora_rows.py`,
same weights, outputs equal to 4e-6; `bench/multi_lora.py` measures the engine end to end). The selection is kept
per thread, so a call of the model from another thread (embeddings) sees the base only.
"""

from __future__ import annotations

import threading

import torch
from torch import nn


class LoraSlots:
    """The adapters attached to one model: their columns in every `MultiLoraLinear`, and the rows' selection."""

    def __init__(self) -> None:
        self.columns: dict[str, tuple[int, int]] = {}  # adapter -> (offset, rank) in every layer's R columns
        self.width = 0  # R
        self._selected = threading.local()

    def __len__(self) -> int:
        return len(self.columns)

    def select(self, adapters: list[str | None]) -> None:
        """Each row's adapter for the next forward pass on this thread; None rows run the base alone."""
        mask = torch.zeros((len(adapters), self.width))  # (B, R)
        for row, name in enumerate(adapters):
            if name is not None:
                offset, rank = self.columns[name]
                mask[row, offset:offset + rank] = 1
        self._selected.mask = mask if any(a is not None for a in adapters) else None
        self._selected.expanded = {}

    def mask_for(self, rows: int, like: torch.Tensor) -> torch.Tensor | None:
        """The selection for a layer input of `rows` flattened rows (B * T), on `like`'s device and dtype."""
        mask = getattr(self._selected, "mask", None)
        if mask is None or mask.shape[1] != self.width:
            return None
        cached = self._selected.expanded.get(rows)
        if cached is None:
            cached = mask.repeat_interleave(rows // mask.shape[0], dim=0).to(like.device, like.dtype)  # (B*T, R)
            self._selected.expanded[rows] = cached
        return cached

    def add(self, model: nn.Module, name: str, layers: dict[str, tuple[torch.Tensor, torch.Tensor, float]],
            rank: int) -> None:
        """Attach adapter `name`: `layers` maps module paths of `model` (nn.Linear) to (A, B, scale)."""
        offset = self.width
        for path in layers:
            module = model.get_submodule(path)
            if not isinstance(module, MultiLoraLinear):
                if not isinstance(module, nn.Linear):
                    raise TypeError(f"{path} is a {type(module).__name__}, not a Linear layer")
                parent, _, leaf = path.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, leaf, MultiLoraLinear(module, self))
        for module in model.modules():
            if isinstance(module, MultiLoraLinear) and module.slots is self:
                module.grow(layers.get(module.path_in(model)), rank)
        self.columns[name] = (offset, rank)
        self.width += rank

    def remove(self, model: nn.Module, name: str) -> None:
        offset, rank = self.columns.pop(name)
        for module in model.modules():
            if isinstance(module, MultiLoraLinear) and module.slots is self:
                module.drop(offset, rank)
        self.columns = {n: (o - rank if o > offset else o, r) for n, (o, r) in self.columns.items()}
        self.width -= rank

    def nbytes(self, model: nn.Module) -> int:
        return sum(m.a.numel() * m.a.element_size() + m.bt.numel() * m.bt.element_size()
                   for m in model.modules() if isinstance(m, MultiLoraLinear) and m.slots is self)


class MultiLoraLinear(nn.Module):
    """A Linear layer plus the LoRA deltas of every attached adapter, applied to each row's own adapter only."""

    def __init__(self, base: nn.Linear, slots: LoraSlots):
        super().__init__()
        self.base = base
        self.slots = slots
        weight = base.weight
        self.register_buffer("a", weight.new_zeros((slots.width, base.in_features)), persistent=False)  # (R, in)
        self.register_buffer("bt", weight.new_zeros((slots.width, base.out_features)), persistent=False)  # (R, out)
        self._path: str | None = None

    def path_in(self, model: nn.Module) -> str:
        if self._path is None:
            self._path = next(p for p, m in model.named_modules() if m is self)
        return self._path

    def grow(self, lora: tuple[torch.Tensor, torch.Tensor, float] | None, rank: int) -> None:
        """Append `rank` columns: the adapter's (A, B, scale) for this layer, or zeros when it skips the layer."""
        a = self.a.new_zeros((rank, self.a.shape[1]))
        bt = self.bt.new_zeros((rank, self.bt.shape[1]))
        if lora is not None:
            lora_a, lora_b, scale = lora
            r = lora_a.shape[0]
            a[:r] = lora_a.to(a.dtype)
            bt[:r] = (lora_b.to(bt.dtype) * scale).t()
        self.a = torch.cat([self.a, a])
        self.bt = torch.cat([self.bt, bt])

    def drop(self, offset: int, rank: int) -> None:
        keep = torch.cat([torch.arange(offset), torch.arange(offset + rank, self.a.shape[0])]).to(self.a.device)
        self.a = self.a.index_select(0, keep)
        self.bt = self.bt.index_select(0, keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        flat = x.reshape(-1, x.shape[-1])  # (B*T, in)
        mask = self.slots.mask_for(flat.shape[0], flat) if self.a.shape[0] else None
        if mask is None:
            return y
        hidden = (flat @ self.a.t()) * mask  # (B*T, R): each row keeps its own adapter's columns
        return torch.addmm(y.reshape(-1, y.shape[-1]), hidden, self.bt).view_as(y)
