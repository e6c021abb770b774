"""What reading a dataset may cost inside a long-lived process (the server, `/start`'s pre-check).

* One full read at a time (`bounded_read`): six requests for a huge file take turns instead of holding six
  copies of it at once; a read that waits costs a sleeping thread, not memory.
* Memory handed back: after each read the freed heap is returned to the operating system (glibc's
  `malloc_trim`; CPython's allocator alone keeps the freed pages of many small objects).
* A budget for token statistics (`MAX_STATS_MESSAGES`): validating with a model renders and tokenizes
  samples until that many messages are measured; the report says how many samples the figures cover.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

MAX_CONCURRENT_READS = 1
MAX_STATS_MESSAGES = 200_000
_reads = threading.BoundedSemaphore(MAX_CONCURRENT_READS)


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to call
        return None


_trim = _malloc_trim()


def release_memory() -> None:
    """Collect garbage and give the freed heap back to the operating system where the C library can."""
    gc.collect()
    if _trim is not None:
        _trim(0)


_gc_lock = threading.Lock()
_gc = {"pauses": 0, "was_enabled": True}


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (nested and across threads: back as it was when the
    last block ends). Reading a dataset builds hundreds of thousands of acyclic objects; the collector would
    traverse them again and again as they are made (more than half the time of reading a 100,000-row CSV)."""
    with _gc_lock:
        if _gc["pauses"] == 0:
            _gc["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc["pauses"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc["pauses"] -= 1
            if _gc["pauses"] == 0 and _gc["was_enabled"]:
                gc.enable()


@contextmanager
def bounded_read() -> Iterator[None]:
    """Hold one of the process's dataset-read slots for the block, then return the memory it freed."""
    with _reads:
        try:
            yield
        finally:
            release_memory()
