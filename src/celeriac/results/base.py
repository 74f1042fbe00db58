"""The result-store contract: bytes in, bytes out.

A store keeps encoded records (:mod:`celeriac.record`) by task id. The worker writes them in batches
(``store_async``); a caller blocks in ``wait`` until the record exists (no polling: the Redis store
blocks on the key).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence

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

    def location(self) -> Hashable | None:
        """Where this store keeps results, as an opaque identity (None: nowhere a broker can write).

        The app compares it with the broker's :meth:`~celeriac.broker.base.ResultSettling.results_location`
        to decide whether results travel with the broker's fenced acks."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release consumer-side resources."""

    def close_sync(self) -> None:  # noqa: B027 - optional hook
        """Release producer-side resources."""
