"""A worker's local mirror of the revocation stream: checking a task is one set lookup.

Revocations live in Redis (``<prefix>:revoked``, a stream written by ``revoke.lua``) with a time to
live and a cap. A worker loads the stream when it starts and then reads only the entries it has not
seen (``XREAD`` from its last id): with every fetch batch, in the same round trip as the fetch and
after it (see ``RedisBroker.fetch``), and in its control loop. So a revoke costs nothing per worker,
reaches workers started later, and a task whose revocation reached Redis before the fetch that took
it never starts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revoked task id."""

    task_id: str
    #: epoch ms of the revoke (the stream entry's time)
    time_ms: int
    #: stop the task if it is running
    terminate: bool = False
    #: signal name for ``terminate`` (process pool)
    signal: str = "SIGTERM"


class RevokedMirror:
    """The revoked ids a worker knows of, expired by age like the stream they come from.

    Args:
        ttl_ms: how long a revocation counts (the stream's trim age; ``revoke_expires_s``).
        max_entries: at most this many ids are kept (the stream's cap; oldest dropped first).
    """

    def __init__(self, ttl_ms: int = 86_400_000, max_entries: int = 100_000) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        #: id of the last stream entry applied ("0-0": nothing read yet)
        self.last_id = "0-0"
        #: the revoked ids (read it, never change it): a plain dict, so that the worker's check of a
        #: task is one C-level lookup (and none at all while nothing is revoked)
        self.ids: dict[str, Revocation] = {}
        self._order: deque[Revocation] = deque()
        #: revocations with ``terminate`` not yet looked at by the worker (it drains this list)
        self.terminations: list[Revocation] = []

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def __bool__(self) -> bool:
        return bool(self.ids)

    def get(self, task_id: str) -> Revocation | None:
        return self.ids.get(task_id)

    def add(self, revocation: Revocation) -> None:
        """Apply one revocation (a newer one for the same id replaces it)."""
        self.ids[revocation.task_id] = revocation
        self._order.append(revocation)
        if revocation.terminate:
            self.terminations.append(revocation)
            del self.terminations[: -self.max_entries]
        while len(self._order) > self.max_entries:
            self._drop(self._order.popleft())

    def expire(self, now_ms: int) -> None:
        """Forget revocations older than the time to live."""
        horizon = now_ms - self.ttl_ms
        while self._order and self._order[0].time_ms < horizon:
            self._drop(self._order.popleft())

    def _drop(self, old: Revocation) -> None:
        if self.ids.get(old.task_id) is old:
            del self.ids[old.task_id]


@dataclass(frozen=True, slots=True)
class ControlCommand:
    """A command for live workers (``celeriac control shutdown``), written to the revocation stream
    by ``control.lua`` and read by each worker's control loop."""

    #: ``shutdown`` (warm) or ``heartbeat`` (publish the heartbeat now: ``celeriac inspect``)
    command: str
    #: the worker ids it is for; empty: every worker
    destination: tuple[str, ...] = ()

    def for_worker(self, worker_id: str) -> bool:
        return not self.destination or worker_id in self.destination


def entry_time_ms(entry_id: str) -> int:
    """The time part of a stream entry id (``<ms>-<seq>``)."""
    head, _, _ = entry_id.partition("-")
    return int(head) if head.isdigit() else 0


__all__ = ["ControlCommand", "Revocation", "RevokedMirror", "entry_time_ms"]
