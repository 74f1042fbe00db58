"""The broker contract: what the app (producer side) and the worker (consumer side) need, nothing else.

The producer side is synchronous (called from web request handlers and tasks); the consumer side is
asyncio (the worker's event loop owns all Redis I/O). Brokers move opaque bytes: encoding lives in
:mod:`celeriac.message`, policy (retries, leases, dead-lettering decisions) in the worker's executor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..exceptions import BrokerError

if TYPE_CHECKING:
    from ..results.base import StoreResult
    from .revoked import Revocation, RevokedMirror


@dataclass(slots=True)  # not frozen: a frozen init costs ~0.1 us per field, per message
class Delivery:
    """One delivery of a message to this worker.

    ``deliveries`` counts how many times the message has been handed to a worker (1 the first time);
    it is also the fencing token: an outcome is only recorded while the worker owns this delivery.
    """

    queue: str
    entry_id: str
    data: bytes
    deliveries: int = 1


@dataclass(slots=True)  # not frozen: a frozen init costs ~0.1 us per field, per message
class Enqueue:
    """One message to send: ready now, or delayed by ``delay_ms`` (Redis clock) or until ``eta_ms``."""

    queue: str
    data: bytes
    delay_ms: int | None = None
    eta_ms: int | None = None


@dataclass(slots=True)  # not frozen: a frozen init costs ~0.1 us per field, per message
class Settlement:
    """The broker-level outcome of a delivery.

    ``ack``: done (success or final failure). ``retry``: done, and ``data`` is parked until its due time.
    ``dead``: done, and ``data`` goes to the dead-letter queue with ``reason``. ``result``: the result
    record to write with it, only while the delivery is owned (fenced like the ack); set only for a
    broker whose server is the result store (:meth:`Broker.stores_results_for`).
    """

    delivery: Delivery
    kind: Literal["ack", "retry", "dead"] = "ack"
    data: bytes = b""
    delay_ms: int | None = None
    eta_ms: int | None = None
    reason: str = ""
    result: StoreResult | None = None
    #: the lock of a unique task that finished (``unique_key``), released with the ack if owned
    unique: str | None = None
    #: the task id the lock must hold to be released (with ``unique``)
    task_id: str = ""


@dataclass(frozen=True)
class QueueStats:
    """Counts for one queue."""

    name: str
    ready: int
    delayed: int
    running: int
    dead: int


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter entry."""

    entry_id: str
    task_id: str
    data: bytes
    reason: str
    time_ms: int


def task_id_of(data: bytes) -> str:
    """The task id inside an encoded message, or "" when it cannot be read. Nothing is unpickled and
    no signature is checked: this is for listings."""
    from ..message import peek

    found = peek(data)
    return found[0] if found is not None else ""


@dataclass(frozen=True)
class WorkerInfo:
    """What a live worker publishes about itself."""

    worker_id: str
    fields: dict[str, str]


class Broker(ABC):
    """A message store with leased deliveries. See :class:`celeriac.broker.redis.RedisBroker`."""

    # ---- producer side (sync) -------------------------------------------------------------------
    @abstractmethod
    def enqueue(self, item: Enqueue) -> None:
        """Send one message (one round trip)."""

    @abstractmethod
    def enqueue_many(self, items: Sequence[Enqueue]) -> None:
        """Send many messages in as few round trips as possible."""

    # ---- consumer side (asyncio) ----------------------------------------------------------------
    def for_worker(self) -> Broker:
        """The broker a worker consumes through: its own connections where the broker has any, so
        that several workers (or a worker and producers) in one process never share a connection."""
        return self

    @abstractmethod
    async def open(self, queues: Sequence[str]) -> None:
        """Prepare to consume ``queues`` (connections, consumer groups)."""

    @abstractmethod
    async def close(self) -> None:
        """Release consumer-side resources."""

    @abstractmethod
    async def fetch(self, queues: Sequence[str], consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """Take up to ``count`` ready messages, in queue priority order, leasing them to ``consumer``.

        Blocks up to ``block_ms`` when none is ready (0: do not block).
        """

    @abstractmethod
    async def settle(
        self, consumer: str, settlements: Sequence[Settlement], results: Sequence[StoreResult] = ()
    ) -> list[Delivery]:
        """Record outcomes of deliveries still owned by ``consumer``; return the fenced-out ones.

        A settlement's ``result`` is written first, atomically with its ack and only if the delivery is
        owned: a fenced-out delivery neither acks nor writes its result. ``results`` are records of
        deliveries already acked before their task ran (at-most-once): nothing to fence, they are
        stored first in the same round trip. The worker passes either only when
        :meth:`stores_results_for` says this broker's server is the result store.
        """

    def stores_results_for(self, backend: object) -> bool:
        """True when ``backend`` keeps results on this broker's server, so that :meth:`settle` can
        write them atomically with the fenced acks. Otherwise the worker checks ownership with
        :meth:`extend` first and writes only the results of deliveries it still owns."""
        return False

    @abstractmethod
    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Renew the leases of ``deliveries``; return those no longer owned."""

    @abstractmethod
    async def reclaim(
        self, queue: str, consumer: str, count: int, lease_ms: int, max_deliveries: int
    ) -> tuple[list[Delivery], int]:
        """Take over up to ``count`` expired leases; dead-letter over-delivered ones.

        Returns the new deliveries and how many messages were dead-lettered.
        """

    @abstractmethod
    async def promote(self, queue: str) -> float | None:
        """Move due delayed messages to ready; return seconds until the next one is due, or None."""

    @abstractmethod
    async def wait_wake(self, queues: Sequence[str], timeout_s: float) -> None:
        """Return when a delayed message became the earliest of one of ``queues``, or at timeout."""

    @abstractmethod
    async def pending(self, queue: str, consumer: str) -> list[Delivery]:
        """Deliveries of ``queue`` currently leased to ``consumer`` (``data`` left empty)."""

    @abstractmethod
    async def release(self, consumer: str, deliveries: Sequence[Delivery], *, started: bool) -> int:
        """Give deliveries back (shutdown): unstarted ones re-queued fresh, started ones reclaimable now."""

    async def prune_consumers(self, queue: str, idle_ms: int, *, keep: str = "", only: str = "") -> int:
        """Forget consumers idle at least ``idle_ms`` that own nothing (never ``keep``; with ``only``,
        just that one); return how many."""
        return 0

    @abstractmethod
    async def heartbeat(
        self, worker_id: str, fields: dict[str, str], ttl_s: float, queues: Sequence[str]
    ) -> None:
        """Publish this worker's liveness (one key with a TTL)."""

    @abstractmethod
    async def unregister(self, worker_id: str) -> None:
        """Remove this worker's liveness key (clean shutdown)."""

    # ---- admin side (sync) ----------------------------------------------------------------------
    @abstractmethod
    def stats(self, queue: str) -> QueueStats:
        """Counts of ready, delayed, running and dead-lettered messages of a queue."""

    @abstractmethod
    def known_queues(self) -> list[str]:
        """Queues that live workers consume."""

    @abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Live workers."""

    @abstractmethod
    def dead_letters(self, queue: str, count: int) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of a queue."""

    @abstractmethod
    def replay_dead(self, queue: str, count: int, entry_id: str | None = None) -> int:
        """Move dead letters back to ready; return how many moved."""

    @abstractmethod
    def purge_dead(self, queue: str) -> int:
        """Delete all dead letters of a queue; return how many were deleted."""

    @abstractmethod
    def purge(self, queue: str) -> int:
        """Delete the ready and delayed messages of a queue; return how many were deleted."""

    def server_warnings(self) -> list[str]:
        """Problems with the server's configuration (eviction policy, version)."""
        return []

    # ---- task control: revoke, unique tasks, priorities (see celeriac.control) ------------------
    def enqueue_one(
        self,
        item: Enqueue,
        *,
        task_id: str,
        level: int = 0,
        unique_key: str | None = None,
        unique_ttl_ms: int = 0,
    ) -> str:
        """Send one message at priority ``level`` (0 highest .. 9), and/or as a unique task: when the
        lock ``unique_key`` of ``item.queue`` is held, nothing is sent and the holder's task id is
        returned. Returns the id of the task queued (``task_id`` or the holder's)."""
        raise BrokerError(f"{type(self).__name__} does not support priorities or unique tasks")

    async def release_unique(self, queue: str, unique_key: str, task_id: str) -> None:  # noqa: B027
        """Release the lock of a unique task that finished after an early ack (at-most-once)."""

    def revoke(
        self, task_ids: Sequence[str], *, terminate: bool, signal: str, ttl_s: float, max_entries: int
    ) -> None:
        """Record revocations (kept ``ttl_s``, at most ``max_entries``) for every worker to see."""
        raise BrokerError(f"{type(self).__name__} does not support revoke")

    @property
    def revocations(self) -> RevokedMirror:
        """This consumer's mirror of the revocations (kept in sync by :meth:`fetch` and
        :meth:`sync_revoked`)."""
        mirror = getattr(self, "_revocations", None)
        if mirror is None:
            from .revoked import RevokedMirror

            mirror = RevokedMirror()
            self._revocations = mirror
        return mirror

    async def sync_revoked(self, block_ms: int = 0) -> list[Revocation]:
        """Bring :attr:`revocations` up to date; block up to ``block_ms`` for a new one (0: do not).
        Returns the revocations learned."""
        return []

    def expect_running(self, deliveries: int) -> None:  # noqa: B027 - optional hook
        """The most deliveries one consumer of this broker will own at once (a worker's largest
        concurrency plus one fetch): lets the broker size the reads that check ownership."""

    def close_sync(self) -> None:  # noqa: B027 - optional hook
        """Release producer-side resources."""
