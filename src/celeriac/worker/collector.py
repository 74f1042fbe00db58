"""The cyclic garbage collector while a worker consumes: tuned at the start, restored at the end."""

from __future__ import annotations

import gc
from collections.abc import Callable

__all__ = ["GC_GEN0_THRESHOLD", "consuming_gc"]

#: the young generation's collection threshold while a worker consumes (CPython's default: 700)
GC_GEN0_THRESHOLD = 5_000


def consuming_gc() -> Callable[[], None]:
    """Set the cyclic garbage collector up for consuming; returns what restores it (call it once).

    * What exists when consuming starts (modules, the app, its tasks, this worker) lives as long as
      the worker: frozen (``gc.freeze()``), out of the collector's way, so that the full collections a
      busy worker triggers look only at what running tasks left behind, not at every object the
      imports made.
    * Each task allocates a few dozen container objects (its message, request, job, outcome, asyncio
      task and coroutine) that nearly all die with it: at CPython's default threshold (700 net
      allocations) young-generation collections ran many times per fetched batch, each scanning the
      objects of every task in flight. The threshold is raised to :data:`GC_GEN0_THRESHOLD` (never
      lowered; a process that turned automatic collection off, threshold 0, keeps it off).

    The worker's run undoes both however it ends (a stop, the end of a burst, a cancellation, an
    error), so an embedded worker leaves its process's collector as it found it.
    """
    before = gc.get_threshold()
    gc.freeze()
    if before[0]:
        gc.set_threshold(max(before[0], GC_GEN0_THRESHOLD), *before[1:])

    def restore() -> None:
        gc.set_threshold(*before)
        gc.unfreeze()

    return restore
