"""Execution pools: where a task's code runs. Pools run code only; the worker's loop owns Redis I/O.

* ``asyncio``: coroutine tasks run on the worker's event loop; sync tasks run in a small thread pool
  (``sync_threads``), with their context (``self.request``) carried over.
* ``threads``: every sync task gets a thread (concurrency = threads); coroutine tasks still run on the
  loop, since a thread would only add a second event loop.

The map below is the only place pools are named (no dotted-string lookups).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class ThreadBackedPool:
    """Runs sync callables in a thread pool of ``threads`` threads."""

    name = "threads"

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"celeriac-{self.name}")
        self._busy = 0  # sync calls still running in threads (a cancelled await does not stop them)
        self._lock = threading.Lock()

    async def run_sync(self, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._counted, call)

    def _counted(self, call: Callable[[], Any]) -> Any:
        with self._lock:
            self._busy += 1
        try:
            return call()
        finally:
            with self._lock:
                self._busy -= 1

    @property
    def busy_threads(self) -> int:
        """Threads still running task code (after a cold or timed-out shutdown: abandoned ones)."""
        return self._busy

    def shutdown(self, wait: bool) -> None:
        # Threads cannot be interrupted; on a cold or timed-out shutdown they are abandoned (daemon-like):
        # their deliveries are handed back to the queue by the worker, and their outcomes are dropped.
        self._executor.shutdown(wait=wait, cancel_futures=True)


class AsyncioPool(ThreadBackedPool):
    """Coroutines on the loop; sync tasks in a bounded thread pool."""

    name = "asyncio"


POOLS: dict[str, type[ThreadBackedPool]] = {"asyncio": AsyncioPool, "threads": ThreadBackedPool}
DEFAULT_CONCURRENCY = {"asyncio": 100, "threads": 10}


def make_pool(kind: str, concurrency: int) -> ThreadBackedPool:
    """A pool by name (``asyncio`` or ``threads``)."""
    try:
        cls = POOLS[kind]
    except KeyError:
        raise ValueError(f"unknown pool {kind!r}: choose one of {', '.join(POOLS)}") from None
    threads = concurrency if kind == "threads" else min(concurrency, 32)
    return cls(max(1, threads))
