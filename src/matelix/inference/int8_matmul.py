"""int8 weight-only products for the few rows of a decode step: y = (x W^T) * scale with W int8 (out, in), one
fp32 scale per output channel, x and y fp32.

    y = few_rows_product(x, weight_int8, scale)   # x (M, in) fp32, M ≤ FEW_ROWS → (M, out) fp32

Hand-written (a loop compiled by numba) because torch's own weight-only kernel is slow for one or a few rows on
AVX2 CPUs: `torch._weight_int8pack_mm` converts activations and weights to bf16, which these CPUs have no
instructions for. Measured on the development machine (AMD EPYC, 2 cores, AVX2 only, torch 2.13, numba 0.68),
streaming the 120 int8 projections of SmolLM2-135M's 30 layers (106 MB, more than the 32 MB L3) plus its
49k-row head, best of 5, in a probe on random weights (the VM's speed varies by ±30% between runs; the
ratios held in each; `int8_loop_ab` in `bench/cpu_serving.py` reprints both kernels on the model's own
layers, e.g. 26.3 / 34.6 / 112.4 ms with torch's kernel against 19.5 / 29.8 / 93.2 ms with this loop at
1 / 4 / 16 rows):

| rows | `_weight_int8pack_mm` layers / head | this loop layers / head |
| ---: | ---: | ---: |
| 1 | 18–19 / 4.5 ms | 9.3–12.6 / 1.9–2.0 ms |
| 4 | 25–26 / 6.3–6.7 ms | 16.4–21.4 / 4.2–4.9 ms |
| 16 | 77–87 / 21–29 ms | 62–75 / 17–20 ms |

At one row the loop reads the layers' 106 MB in ~10 ms, ~10 GB/s, near what a plain torch sum over a large
tensor reads here (11–18 GB/s), and a hand-written AVX2 kernel in C did no better in a one-off probe
(10.6 / 2.3 ms), so there is no case for C code here. The activations
stay fp32 (bf16 in torch's kernel), so the result is closer to the fp32 product. Larger products (prefill) keep
torch's kernel, which the loop does not beat once the rows no longer fit in registers.

The whole lean decode step of SmolLM2 with int8 weights, torch's kernel and this loop alternating in one
process (64-token cache, medians; `int8_loop_ab` in `bench/cpu_serving.py`): 58.1 → 46.1 ms at 1 row (1.26x),
62.1 → 48.5 ms at 4, 167.2 → 141.1 ms at 16 in a bench run; 60.8 → 44.9, 70.3 → 64.2 and 181.4 → 156.8 ms
when the function ran alone later; 50.0 → 37.3, 67.0 → 54.3 and 183.9 → 146.6 ms in a probe before both. numba's threads come from its own OpenMP runtime (the system's libgomp) beside torch's;
those figures include whatever the two pools cost each other.

The engine's decode steps of int8 (and fp32) Llama-style models run whole layers compiled
(`compiled_decode.py`), whose products call this loop (`products`, up to three weights in one parallel loop);
`few_rows_product` serves `Int8Linear` everywhere else (other architectures, adapters attached).

`parallel=True` splits the output channels over numba's threads; `nogil=True` lets the server's event loop run
while a step computes; `fastmath` lets LLVM reorder the sum into vector lanes (each row's sum is computed the same
way whatever M is, so a row of a batch equals the same row alone). The first call compiles (~2 s, cached on disk
by numba where its cache folder is writable); `warm_up()` pays it at model load.
"""

from __future__ import annotations

import contextlib
import threading

import numba
import numpy as np
import torch
from numba import njit, prange

FEW_ROWS = 16  # up to this many rows the loop beats torch's kernel here (table above)
# Output channels a thread takes at a time (numba's default: one equal share each, fixed up front). In a
# server the event loop, detokenizing and the clients share the cores with the loops' threads, and a thread
# that loses its core for a moment holds back the whole product; in chunks the other thread takes over its
# work. SmolLM2 through the server, one client, 64 tokens, servers alternating (five pairs over two runs, the
# VM's speed drifting between them): fp32 14.7 / 15.0 / 15.9 / 16.5 / 21.7 tok/s with one share each against
# 16.8 / 16.8 / 17.1 / 17.8 / 23.2 with chunks of 64 (+7% to +14%); int8 35.8 / 33.9 / 38.3 / 41.5 / 48.4
# against 39.9 / 44.2 / 36.6 / 39.9 / 47.5 (mixed, within the noise). Chunks of 16 were too small (11.3 /
# 21.8); 128 and 256 within the noise of 64. The decode step alone, no other load: within ±10% either way.
CHUNK = 64
_thread = threading.local()  # the thread count this thread last gave numba (as many as torch uses)
_workqueue_lock = threading.Lock()


def compile_loop(fn=None, *, parallel: bool = True):
    """`fn` compiled by numba (`parallel` splits its `prange` loops over threads), its machine code cached on
    disk when numba finds a writable cache folder (next to this file, else NUMBA_CACHE_DIR or the user's
    cache); without one (a read-only install and no home) it compiles at every start instead of failing the
    import. A decorator, bare or with `parallel=False`."""
    if fn is None:
        return lambda f: compile_loop(f, parallel=parallel)
    options = {"parallel": parallel, "fastmath": True, "nogil": True}
    try:
        return njit(cache=True, **options)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(**options)(fn)


@compile_loop
def products(x, w1, s1, w2, s2, w3, s3, out):  # pragma: no cover - compiled by numba
    """out (M, N1 + N2 + N3) = x (M, K) times each weight (Ni, K) transposed, times its scales (Ni,): up to three
    products of one input in one parallel loop over their output channels (w2 and w3 may have no rows). The
    one product loop: `few_rows_product` and `compiled_decode`'s layers call it."""
    first, second = w1.shape[0], w1.shape[0] + w2.shape[0]
    inner = x.shape[1]
    for channel in prange(second + w3.shape[0]):
        n = np.int64(channel)  # prange's index may be unsigned: int64 - int64 stays an integer
        if n < first:
            weight, scale, row = w1, s1, n
        elif n < second:
            weight, scale, row = w2, s2, n - first
        else:
            weight, scale, row = w3, s3, n - second
        for m in range(x.shape[0]):
            acc = np.float32(0)
            for k in range(inner):
                acc += np.float32(weight[row, k]) * x[m, k]
            out[m, n] = acc * scale[row]


def few_rows_product(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(M, in) fp32 x (out, in) int8 weights, (out,) fp32 scales → (M, out) fp32; CPU tensors."""
    x = x.detach().contiguous()
    use_threads()
    out = torch.empty((x.shape[0], weight.shape[0]), dtype=torch.float32)
    w = weight.numpy()
    none, none_scale = np.empty((0, w.shape[1]), w.dtype), np.empty(0, np.float32)
    with launches():
        products(x.numpy(), w, scale.numpy(), none, none_scale, none, none_scale, out.numpy())
    return out


def use_threads() -> None:
    """Give numba's loops as many threads as torch uses in this thread, taking CHUNK channels at a time (both
    settings are per calling thread in numba)."""
    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    if getattr(_thread, "threads", None) != threads:  # setting it costs; most calls find it set
        numba.set_num_threads(threads)
        numba.set_parallel_chunksize(CHUNK)  # per calling thread too
        _thread.threads = threads


def launches():
    """A context to call the compiled loops in: numba's OpenMP and TBB threading layers take calls from several
    threads at once (engines of two loaded models), its fallback `workqueue` layer (where neither runtime is
    installed) aborts the process on concurrent calls, so there they take turns."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel loop has run yet: the layer is not chosen
        layer = "workqueue"
    return _workqueue_lock if layer == "workqueue" else contextlib.nullcontext()


def warm_up() -> None:
    """Compile the loop now (model load) rather than on the first request's first decode step."""
    few_rows_product(torch.zeros(1, 8), torch.zeros(2, 8, dtype=torch.int8), torch.ones(2))
