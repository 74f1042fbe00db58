"""Memory housekeeping of a worker: the cyclic garbage collector while it consumes (tuned at the
start, restored at the end), and the C heap's freed pages given back to the system when it rests."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from typing import Any

__all__ = ["GC_GEN0_THRESHOLD", "HeapTrimmer", "consuming_gc", "release_freed_memory"]

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


_libc: Any = None


def release_freed_memory() -> bool:
    """Give the pages that the C heap holds free back to the system (glibc's ``malloc_trim``).

    Start-up (imports compile and build many temporary objects) and bursts of tasks leave the heap
    with free pages that glibc keeps; a worker then sits on them while it waits for work. False where
    there is no glibc (musl, macOS): nothing is done.
    """
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _libc = False
    if _libc is False:
        return False
    _libc(0)
    return True


class HeapTrimmer:
    """Calls :func:`release_freed_memory` when a worker comes to rest: at a heartbeat that finds no
    task running and some run since the last trim (so an idle worker trims once, a busy one never)."""

    def __init__(self) -> None:
        self._trimmed_at = -1

    def rest(self, processed: int, running: int) -> bool:
        """Trim if the worker rests after work; whether it did."""
        if running or processed == self._trimmed_at:
            return False
        self._trimmed_at = processed
        return release_freed_memory()
