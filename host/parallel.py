"""Work the board's cores share: the integer h_s by bands of rows, y by substreams, the fabric's
windows in and the image out by window and bands of rows. Our C kernels (through ctypes) release
the GIL, so threads of one process keep every core busy. The worker threads are started once per
process, not per call: a frame makes several such calls, and on the board's ARM cores starting
threads is not free."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=None)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lic-worker")


def each(fn, items, threads: int = 1) -> list:
    """[fn(item) for item in items], on up to `threads` threads. The items must not wait on work
    given to this pool themselves (none does: each is a leaf of C or numpy work)."""
    items = list(items)
    if threads > 1 and len(items) > 1:
        return list(_pool(threads).map(fn, items))
    return [fn(item) for item in items]


def row_bands(rows: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) of `parts` bands of nearly equal height covering `rows` (fewer when rows < parts)."""
    bounds = np.linspace(0, rows, max(1, min(parts, rows)) + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
