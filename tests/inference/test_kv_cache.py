"""The engine's growing KV cache: same keys/values as transformers' DynamicLayer, written in place between
buffer growths, and correct again after the engine replaced a layer's tensors (merge, trim, row selection)."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from matelix.inference.kv_cache import GROWTH_TOKENS, GrowingLayer, new_cache


def steps(n: int, length: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    return [(torch.randn(2, 3, length, 4), torch.randn(2, 3, length, 4)) for _ in range(n)]


def test_growing_layer_holds_what_dynamic_layer_holds():
    grow, plain = GrowingLayer(), DynamicLayer()
    for keys, values in steps(1, length=5) + steps(GROWTH_TOKENS + 3):
        got = grow.update(keys, values)
        want = plain.update(keys, values)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert grow.get_seq_length() == plain.get_seq_length() == 5 + GROWTH_TOKENS + 3


def test_decode_steps_write_into_the_same_buffer_until_it_is_full():
    layer = GrowingLayer()
    layer.update(*steps(1, length=10)[0])
    buffer = layer.keys.data_ptr()
    for keys, values in steps(GROWTH_TOKENS):
        layer.update(keys, values)
        assert layer.keys.data_ptr() == buffer
    layer.update(*steps(1)[0])
    assert layer.keys.data_ptr() != buffer  # full: copied into a larger buffer


def test_tensors_the_engine_puts_in_are_taken_over():
    layer = GrowingLayer()
    for keys, values in steps(4):
        layer.update(keys, values)
    layer.batch_select_indices(torch.tensor([1]))  # a row left
    layer.keys, layer.values = layer.keys[:, :, 1:], layer.values[:, :, 1:]  # padding trimmed
    expected = layer.keys.clone()
    new_keys, new_values = steps(1)[0]
    keys, _ = layer.update(new_keys[1:], new_values[1:])
    assert torch.equal(keys, torch.cat([expected, new_keys[1:]], dim=2))


def test_new_cache_uses_growing_layers(tiny_lm):
    cache = new_cache(tiny_lm[1].config)
    assert cache.layers and all(type(layer) is GrowingLayer for layer in cache.layers)
