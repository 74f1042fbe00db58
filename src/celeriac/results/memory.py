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
        self._progress: dict[str, tuple[bytes, float]] = {}
        self._progress_seq = 0  # bumped at each progress write (waiters compare it)
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

    def store_progress(self, task_id: str, payload: bytes, ttl_s: float) -> bool:
        with self._cond:
            if self.get(task_id) is not None:
                return False
            self._progress[task_id] = (payload, self._clock() + ttl_s)
            self._progress_seq += 1
            self._cond.notify_all()
            return True

    def _get_progress(self, task_id: str) -> bytes | None:
        item = self._progress.get(task_id)
        if item is None or item[1] <= self._clock():
            self._progress.pop(task_id, None)
            return None
        return item[0]

    def get_with_progress(self, task_id: str) -> tuple[bytes | None, bytes | None]:
        with self._cond:
            return self.get(task_id), self._get_progress(task_id)

    def wait_progress(
        self, task_id: str, timeout_s: float | None, on_progress: Callable[[bytes], None]
    ) -> bytes | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last: bytes | None = None
        while True:
            with self._cond:
                final, progress = self.get(task_id), self._get_progress(task_id)
                if final is None and progress is last:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._cond.wait(remaining)
                    final, progress = self.get(task_id), self._get_progress(task_id)
            if progress is not None and progress is not last and final is None:
                last = progress
                on_progress(progress)
            if final is not None:
                return final
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __len__(self) -> int:
        return len(self._items)
