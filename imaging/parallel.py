"""The threads the engine spreads one image's work over, one pool per process.

PNG bands, the model input's resize and matting tiles all release the GIL,
so on a machine with free cores one job uses them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

# A band of fewer rows than this is not worth a hand-off to another thread.
BAND_MIN_ROWS = 64

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def cpu_threads() -> int:
    """Threads for one image's work: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def shared_pool(threads: int) -> ThreadPoolExecutor:
    """A pool per process: a forked child has its parent's pool but not its threads."""
    global _pool, _pool_pid
    with _pool_lock:
        stale = _pool is None or _pool_pid != os.getpid()
        if stale or _pool._max_workers < threads:
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="imaging")
            _pool_pid = os.getpid()
        return _pool


def in_row_bands(height: int, work: Callable[[int, int], None], *, multiple: int = 1) -> None:
    """``work(first_row, stop_row)`` over row bands, on the shared pool when it
    pays; each band starts on a multiple of ``multiple``."""
    bands = min(cpu_threads(), max(1, height // BAND_MIN_ROWS))
    edges = [min(height, round(height * i / bands / multiple) * multiple) for i in range(bands)]
    edges.append(height)
    if bands == 1:
        work(0, height)
        return
    pool = shared_pool(bands)
    list(pool.map(lambda band: work(edges[band], edges[band + 1]), range(bands)))
