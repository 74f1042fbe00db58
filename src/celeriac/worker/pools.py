"""Execution pools: where a task's code runs. Pools run code only; the worker's loop owns Redis I/O.

* ``asyncio``: coroutine tasks run on the worker's event loop; sync tasks run in a bounded set of
  threads (at most 32), with their context (``self.request``) carried over.
* ``threads``: as ``asyncio``, with one thread per execution slot, for blocking sync code.

Why not ``loop.run_in_executor``: it costs a future chain and a loop wake-up per call. Here threads
take calls from a queue, and finished calls are handed back in batches: while a hand-back is pending
on the loop, further completions join it instead of waking the loop again. Threads are daemons, so a
task stuck in a thread cannot keep the process alive after a cold shutdown has handed it back.

The map below is the only place pools are named (no dotted-string lookups).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class ThreadBackedPool:
    """Runs sync callables in up to ``threads`` daemon threads, started on demand."""

    name = "threads"

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0
        self._busy = 0
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._handback_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def busy_threads(self) -> int:
        """Threads running task code now (after a cold or timed-out shutdown: abandoned ones)."""
        return self._busy

    async def run_sync(self, call: Callable[[], Any]) -> Any:
        """Run ``call`` in a thread and return its result (or raise its exception)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            spawn = self._idle == 0 and self._started < self.threads
            if spawn:
                self._started += 1
            else:
                self._idle -= 1 if self._idle else 0
        self._calls.put((call, future))
        if spawn:
            name = f"celeriac-{self.name}-{self._started}"
            threading.Thread(target=self._thread, name=name, daemon=True).start()
        return await future

    def _thread(self) -> None:
        while True:
            item = self._calls.get()
            if item is _STOP:
                return
            call, future = item
            with self._lock:
                self._busy += 1
            value, error = None, None
            try:
                value = call()
            except BaseException as exc:  # handed to the awaiting coroutine, which decides
                error = exc
            with self._lock:
                self._busy -= 1
                self._idle += 1
                self._done.append((future, value, error))
                wake = not self._handback_pending
                self._handback_pending = True
            if wake:
                assert self._loop is not None
                try:
                    self._loop.call_soon_threadsafe(self._hand_back)
                except RuntimeError:  # the loop is closed: the worker is gone, nobody awaits this
                    return

    def _hand_back(self) -> None:
        with self._lock:
            done, self._done = self._done, []
            self._handback_pending = False
        for future, value, error in done:
            if future.cancelled():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    def shutdown(self, wait: bool) -> None:
        """Stop idle threads. Busy ones (cold shutdown) finish on their own or die with the process."""
        for _ in range(self._started):
            self._calls.put(_STOP)


class AsyncioPool(ThreadBackedPool):
    """Coroutines on the loop; sync tasks in a bounded set of threads."""

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
