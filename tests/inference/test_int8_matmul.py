"""The int8 loop of a decode step: the fp32 product of the dequantized weights, rows independent of the batch,
and Int8Linear choosing it for few rows and torch's kernel for many."""

import pytest
import torch

from matelix.inference.int8_matmul import FEW_ROWS, few_rows_product
from matelix.inference.quantize import Int8Linear


def _weights(out: int, inner: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randint(-127, 128, (out, inner), dtype=torch.int8, generator=g)
    scale = torch.rand(out, generator=g) / 100 + 1e-4
    return weight, scale


@pytest.mark.parametrize(("rows", "out", "inner"), [(1, 96, 64), (3, 33, 77), (16, 200, 576)])
def test_the_loop_is_the_fp32_product_of_the_dequantized_weights(rows, out, inner):
    weight, scale = _weights(out, inner)
    x = torch.randn(rows, inner, generator=torch.Generator().manual_seed(1))
    expected = x.double() @ (weight.double() * scale.double()[:, None]).t()
    got = few_rows_product(x, weight, scale)
    assert got.shape == (rows, out) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_a_row_of_a_batch_equals_the_same_row_alone_bitwise():
    weight, scale = _weights(130, 100)
    x = torch.randn(5, 100, generator=torch.Generator().manual_seed(2))
    batch = few_rows_product(x, weight, scale)
    for i in range(5):
        assert torch.equal(few_rows_product(x[i:i + 1], weight, scale), batch[i:i + 1])


def test_non_contiguous_inputs_under_inference_mode_and_with_grad_are_read_as_they_look():
    weight, scale = _weights(40, 32)
    wide = torch.randn(32, 6)
    x = wide.t()[:4]  # (4, 32), not contiguous
    expected = few_rows_product(x.contiguous(), weight, scale)
    with torch.inference_mode():
        assert torch.equal(few_rows_product(x, weight, scale), expected)
    assert torch.equal(few_rows_product(x.clone().requires_grad_(), weight, scale), expected)


def test_int8_linear_uses_the_loop_for_few_rows_and_torchs_kernel_for_many(monkeypatch):
    import matelix.inference.int8_matmul as int8_matmul

    torch.manual_seed(3)
    linear = torch.nn.Linear(64, 48, bias=True)
    layer = Int8Linear(linear)
    calls = []
    monkeypatch.setattr(int8_matmul, "few_rows_product", lambda *a: calls.append(a[0].shape[0]) or few_rows_product(*a))
    few = torch.randn(2, FEW_ROWS, 64)  # (B, T, in): 2 * FEW_ROWS rows → torch's kernel
    one = torch.randn(1, 1, 64)
    reference = layer.weight_int8.float() * layer.scale[:, None]
    assert layer(one).shape == (1, 1, 48)
    torch.testing.assert_close(layer(one), one @ reference.t() + linear.bias, rtol=1e-5, atol=1e-5)
    assert calls == [1, 1]
    many = layer(few)
    assert calls == [1, 1]  # not called for 32 rows
    # torch's kernel rounds activations to bf16: close to the exact product, not equal
    torch.testing.assert_close(many, few @ reference.t() + linear.bias, rtol=2e-2, atol=2e-2)


def test_without_a_writable_cache_folder_the_loop_still_compiles(monkeypatch):
    import numba.core.caching
    import numpy as np

    from matelix.inference.int8_matmul import compile_loop

    monkeypatch.setattr(numba.core.caching.CacheImpl, "_locator_classes", [])  # no folder numba may cache in

    def double(x, out):
        for i in numba.prange(x.shape[0]):
            out[i] = 2 * x[i]

    with pytest.raises(RuntimeError, match="no locator"):
        numba.njit(cache=True)(double)
    out = np.zeros(3, dtype=np.float32)
    compile_loop(double)(np.arange(3, dtype=np.float32), out)
    assert out.tolist() == [0.0, 2.0, 4.0]


def test_loops_take_turns_only_under_numbas_workqueue_layer(monkeypatch):
    import contextlib

    import numba

    from matelix.inference import int8_matmul

    monkeypatch.setattr(numba, "threading_layer", lambda: "workqueue")  # aborts on concurrent calls
    assert int8_matmul.launches() is int8_matmul._workqueue_lock
    monkeypatch.setattr(numba, "threading_layer", lambda: "omp")
    assert isinstance(int8_matmul.launches(), contextlib.nullcontext)


def test_two_threads_calling_the_loop_at_once_get_their_own_products():
    from concurrent.futures import ThreadPoolExecutor

    from matelix.inference.int8_matmul import few_rows_product

    gen = torch.Generator().manual_seed(0)
    weight = torch.randint(-127, 128, (256, 96), generator=gen, dtype=torch.int8)
    scale = torch.rand(256, generator=gen)
    inputs = [torch.randn(3, 96, generator=gen) for _ in range(2)]
    expected = [few_rows_product(x, weight, scale) for x in inputs]

    def repeat(i):
        return all(torch.equal(few_rows_product(inputs[i], weight, scale), expected[i]) for _ in range(200))

    with ThreadPoolExecutor(2) as pool:  # the engines of two loaded models decode on their own threads
        assert list(pool.map(repeat, [0, 1])) == [True, True]
