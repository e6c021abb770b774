"""The engine's KV cache: transformers' `DynamicCache` with layers that grow in place.

    cache = new_cache(model.config)   # a DynamicCache; plain layers become GrowingLayer

transformers' `DynamicLayer.update` appends a step's keys/values with `torch.cat`, so every decode step copies
the whole cache of every layer: at 16 rows of 500 tokens on SmolLM2-135M (30 layers, 3 KV heads of 64) that is
~740 MB per step, more than the int8 weights the step reads. `GrowingLayer` keeps its keys/values as views
into buffers with spare room along T and writes a step's column in place; only a full buffer (or a tensor the
engine put there itself: a merge, a trim, a row selection) is copied into a new buffer, with room for
`GROWTH_TOKENS` more steps. The values are the same as DynamicLayer's, so outputs do not change.

Hand-written: transformers' own `StaticCache` preallocates the whole context for a fixed batch, which the
continuous-batching engine (rows join, leave and are re-padded between steps) cannot use.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

GROWTH_TOKENS = 128  # spare columns allocated with every new buffer (one copy per 128 decode steps)


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose `keys`/`values` (B, H, T, D) are views into buffers (B, H, T + spare, D)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.keys, self._key_buffer = _append(self.keys, self._key_buffer, key_states)
        self.values, self._value_buffer = _append(self.values, self._value_buffer, value_states)
        return self.keys, self.values

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        super().reset()


def _append(current: torch.Tensor, buffer: torch.Tensor | None, new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(view of current + new, the buffer it lives in); writes in place when `current` is the head of `buffer`
    and the buffer has room."""
    length, n = (current.shape[-2] if current.numel() else 0), new.shape[-2]
    in_place = (buffer is not None and length and current.data_ptr() == buffer.data_ptr()
                and current.shape[:2] == buffer.shape[:2] and current.stride() == buffer.stride()
                and length + n <= buffer.shape[2])
    if not in_place:
        batch, heads, _, dim = new.shape
        fresh = new.new_empty((batch, heads, length + n + GROWTH_TOKENS, dim))  # (B, H, T + spare, D)
        if length:
            fresh[:, :, :length] = current
        buffer = fresh
    buffer[:, :, length:length + n] = new
    return buffer[:, :, :length + n], buffer


def new_cache(config) -> DynamicCache:
    """A DynamicCache for `config` whose plain layers grow in place (sliding-window layers stay as they are)."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    if cache.layer_class_to_replicate is DynamicLayer:  # layers made on first use
        cache.layer_class_to_replicate = GrowingLayer
    return cache
