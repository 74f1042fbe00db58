"""The result-store contract: bytes in, bytes out.

A store keeps encoded records (:mod:`celeriac.record`) by task id. The worker writes them in batches
(``store_async``); a caller blocks in ``wait`` until the record exists (no polling: the Redis store
blocks on the key).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence

from ..record import ResultWrite


class ResultBackend(ABC):
    """Stores and serves task results."""

    @abstractmethod
    def get(self, task_id: str) -> bytes | None:
        """The stored record, or None (sync, non-blocking)."""

    @abstractmethod
    def wait(self, task_id: str, timeout_s: float | None) -> bytes | None:
        """Block until the record exists (None: forever) and return it, or None at timeout."""

    @abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete a stored record."""

    @abstractmethod
    def store(self, items: Sequence[ResultWrite]) -> None:
        """Store records (sync; used by eager mode and tools)."""

    @abstractmethod
    async def store_async(self, items: Sequence[ResultWrite]) -> None:
        """Store records in one round trip (the worker's batched result writes)."""

    # ---- task control: revoke marks and progress (update_state) ---------------------------------
    def mark_revoked(self, items: Sequence[tuple[str, bytes]], ttl_s: float) -> None:
        """Store each ``(task id, REVOKED record)`` unless that task already has a final result."""
        self.store([ResultWrite(i, payload, ttl_s) for i, payload in items if self.get(i) is None])

    def store_progress(self, task_id: str, payload: bytes, ttl_s: float) -> bool:
        """Record a progress record (``update_state``) unless the task has a final result; tell
        :meth:`wait_progress` callers. Returns whether it was stored."""
        return False

    def get_with_progress(self, task_id: str) -> tuple[bytes | None, bytes | None]:
        """``(final record, latest progress record)``, read together; either may be None."""
        return self.get(task_id), None

    def wait_progress(
        self, task_id: str, timeout_s: float | None, on_progress: Callable[[bytes], None]
    ) -> bytes | None:
        """As :meth:`wait`, calling ``on_progress`` with each progress record stored meanwhile."""
        return self.wait(task_id, timeout_s)

    def location(self) -> Hashable | None:
        """Where this store keeps results, as an opaque identity (None: nowhere a broker can write).

        The app compares it with the broker's :meth:`~celeriac.broker.base.ResultSettling.results_location`
        to decide whether results travel with the broker's fenced acks."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release consumer-side resources."""

    def close_sync(self) -> None:  # noqa: B027 - optional hook
        """Release producer-side resources."""
