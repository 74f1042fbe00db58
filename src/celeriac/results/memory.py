"""Results kept in this process (tests, ``memory://``). Same contract as the Redis backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from ..record import ResultWrite
from .base import ResultBackend


class MemoryResultBackend(ResultBackend):
    """Thread-safe in-process results with TTLs measured on ``clock`` (seconds)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: dict[str, tuple[bytes, float]] = {}
        self._cond = threading.Condition()

    def get(self, task_id: str) -> bytes | None:
        with self._cond:
            item = self._items.get(task_id)
            if item is None:
                return None
            if item[1] <= self._clock():
                del self._items[task_id]
                return None
            return item[0]

    def wait(self, task_id: str, timeout_s: float | None) -> bytes | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = self.get(task_id)
                if found is not None:
                    return found
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def forget(self, task_id: str) -> None:
        with self._cond:
            self._items.pop(task_id, None)

    def store(self, items: Sequence[ResultWrite]) -> None:
        with self._cond:
            now = self._clock()
            for item in items:
                self._items[item.task_id] = (item.payload, now + item.ttl_s)
            self._cond.notify_all()

    async def store_async(self, items: Sequence[ResultWrite]) -> None:
        self.store(items)

    def __len__(self) -> int:
        return len(self._items)
