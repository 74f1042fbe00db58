"""The broker contract, split by role: what the app, the worker and the admin commands each need.

* :class:`Producer` (sync): ``enqueue``, ``enqueue_many``, ``close_sync``; what a web process uses.
* :class:`Consumer` (asyncio): the lease protocol the worker drives (its event loop owns all I/O).
* :class:`Admin` (sync): counts, listings, dead letters, purges, server checks; the CLI's side.
* :class:`ResultSettling`: an optional consumer capability (the Redis broker's): write results
  atomically with the fenced acks, when the result store lives on the same server.

:class:`Broker` is the base class of a broker that plays all three roles (both built-in brokers do);
``for_worker()`` gives the consumer a worker drives. Brokers move opaque bytes: encoding lives in
:mod:`celeriac.message`, execution policy (retries, dead-lettering decisions) in
:mod:`celeriac.execution`, lease timing in the worker. The knobs both brokers share (batch sizes,
registry TTLs, the max-deliveries reason, the due-time rule) live here, once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, runtime_checkable

from ..exceptions import BrokerError

if TYPE_CHECKING:
    from ..record import ResultWrite
    from .revoked import ControlCommand, Revocation, RevokedMirror


T = TypeVar("T")

# ---- knobs shared by every broker ------------------------------------------------------------------
#: due delayed messages moved to ready per promote call
PROMOTE_BATCH = 1000
#: the workers registry outlives any one worker's TTL; stale ids are pruned by score
WORKERS_REGISTRY_TTL_S = 86_400
#: the set of queue names workers consumed lives this long after the last heartbeat
KNOWN_QUEUES_TTL_S = 7 * 86_400
#: the dead-letter reason of a message delivered ``max_deliveries`` times without an outcome;
#: ``{deliveries}`` is filled in where the count is known (inside reclaim.lua for Redis)
MAX_DELIVERIES_REASON = (
    "delivered {deliveries} times without an outcome (max_deliveries={max_deliveries}; the worker "
    "running it died or lost its lease each time)"
)


def max_deliveries_reason(max_deliveries: int, deliveries: int | None = None) -> str:
    """The dead-letter reason for an over-delivered message (``deliveries`` None: left as a
    ``{deliveries}`` placeholder, for a script to fill in)."""
    return MAX_DELIVERIES_REASON.format(
        deliveries="{deliveries}" if deliveries is None else deliveries, max_deliveries=max_deliveries
    )


def due_ms(eta_ms: int | None, delay_ms: int | None, now_ms: int) -> int:
    """When a delayed message is due: an eta wins over a delay (enqueue_delayed.lua and settle.lua
    apply the same rule on the Redis clock)."""
    return int(eta_ms) if eta_ms is not None else now_ms + int(delay_ms or 0)


def group_by_queue(items: Iterable[T], queue_of: Callable[[T], str]) -> dict[str, list[T]]:
    """``items`` grouped by queue, in first-seen order (one script call per queue)."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(queue_of(item), []).append(item)
    return groups


@dataclass(slots=True)  # not frozen: hot path (design.md)
class Delivery:
    """One delivery of a message to this worker.

    ``deliveries`` counts how many times the message has been handed to a worker (1 the first time);
    it is also the fencing token: an outcome is only recorded while the worker owns this delivery.
    """

    queue: str
    entry_id: str
    data: bytes
    deliveries: int = 1


@dataclass(slots=True)  # not frozen: hot path (design.md)
class Enqueue:
    """One message to send: ready now, or delayed by ``delay_ms`` (Redis clock) or until ``eta_ms``."""

    queue: str
    data: bytes
    delay_ms: int | None = None
    eta_ms: int | None = None


@dataclass(slots=True)  # not frozen: hot path (design.md)
class Settlement:
    """The broker-level outcome of a delivery.

    ``ack``: done (success or final failure). ``retry``: done, and ``data`` is parked until its due time.
    ``dead``: done, and ``data`` goes to the dead-letter queue with ``reason``. ``result``: the result
    record to write with it, only while the delivery is owned (fenced like the ack); set only when
    settling through :meth:`ResultSettling.settle_with_results`.
    """

    delivery: Delivery
    kind: Literal["ack", "retry", "dead"] = "ack"
    data: bytes = b""
    delay_ms: int | None = None
    eta_ms: int | None = None
    reason: str = ""
    result: ResultWrite | None = None
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


@runtime_checkable
class Producer(Protocol):
    """The sending side (sync): what ``Celeriac.send`` needs."""

    def enqueue(self, item: Enqueue) -> None:
        """Send one message (one round trip)."""

    def enqueue_many(self, items: Sequence[Enqueue]) -> None:
        """Send many messages in as few round trips as possible."""

    def close_sync(self) -> None:
        """Release producer-side resources."""


@runtime_checkable
class Consumer(Protocol):
    """The lease protocol (asyncio) a worker drives."""

    async def open(self, queues: Sequence[str]) -> None:
        """Prepare to consume ``queues`` (connections, consumer groups)."""

    async def close(self) -> None:
        """Release consumer-side resources."""

    async def fetch(self, queues: Sequence[str], consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """Take up to ``count`` ready messages, in queue priority order, leasing them to ``consumer``."""
        ...

    async def settle(self, consumer: str, settlements: Sequence[Settlement]) -> list[Delivery]:
        """Record outcomes of deliveries still owned by ``consumer``; return the fenced-out ones."""
        ...

    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Renew the leases of ``deliveries``; return those no longer owned."""
        ...

    async def reclaim(
        self, queue: str, consumer: str, count: int, lease_ms: int, max_deliveries: int
    ) -> tuple[list[Delivery], int]:
        """Take over expired leases; dead-letter over-delivered ones."""
        ...

    async def promote(self, queue: str) -> float | None:
        """Move due delayed messages to ready; seconds until the next one is due, or None."""

    async def wait_wake(self, queues: Sequence[str], timeout_s: float) -> None:
        """Return when a delayed message became the earliest of one of ``queues``, or at timeout."""

    async def pending(self, queue: str, consumer: str) -> list[Delivery]:
        """Deliveries of ``queue`` currently leased to ``consumer``."""
        ...

    async def release(self, consumer: str, deliveries: Sequence[Delivery], *, started: bool) -> int:
        """Give deliveries back (shutdown)."""
        ...

    async def prune_consumers(self, queue: str, idle_ms: int, *, keep: str = "", only: str = "") -> int:
        """Forget idle consumers that own nothing."""
        ...

    async def heartbeat(
        self, worker_id: str, fields: dict[str, str], ttl_s: float, queues: Sequence[str]
    ) -> None:
        """Publish this worker's liveness (one key with a TTL)."""

    async def unregister(self, worker_id: str) -> None:
        """Remove this worker's liveness key (clean shutdown)."""


@runtime_checkable
class ResultSettling(Protocol):
    """A consumer that can write result records atomically with its fenced acks (the Redis broker,
    when results live on its server). Only this capability takes results; plain ``settle`` never does."""

    def results_location(self) -> Hashable | None:
        """Where settle would write results, comparable with :meth:`ResultBackend.location`."""

    async def settle_with_results(
        self, consumer: str, settlements: Sequence[Settlement], early: Sequence[ResultWrite]
    ) -> list[Delivery]:
        """As :meth:`Consumer.settle`, also writing each settlement's ``result`` only while its delivery
        is owned; ``early`` are records of deliveries acked before their task ran (at-most-once):
        nothing to fence, stored first in the same round trip."""
        ...


@runtime_checkable
class Admin(Protocol):
    """Inspection and repair (sync): what the CLI's ``status``, ``purge`` and ``dlq`` need."""

    def stats(self, queue: str) -> QueueStats:
        """Counts of ready, delayed, running and dead-lettered messages of a queue."""
        ...

    def known_queues(self) -> list[str]:
        """Queues that live workers consume."""
        ...

    def workers(self) -> list[WorkerInfo]:
        """Live workers."""
        ...

    def dead_letters(self, queue: str, count: int) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of a queue."""
        ...

    def replay_dead(self, queue: str, count: int, entry_id: str | None = None) -> int:
        """Move dead letters back to ready; return how many moved."""
        ...

    def purge_dead(self, queue: str) -> int:
        """Delete all dead letters of a queue; return how many were deleted."""
        ...

    def purge(self, queue: str) -> int:
        """Delete the ready and delayed messages of a queue; return how many were deleted."""
        ...

    def server_warnings(self) -> list[str]:
        """Problems with the server's configuration; raises when the server cannot be used."""
        ...


class Broker(ABC):
    """A broker playing all three roles (:class:`Producer`, :class:`Consumer`, :class:`Admin`).
    See :class:`celeriac.broker.redis.RedisBroker`."""

    # ---- producer side (sync) -------------------------------------------------------------------
    @abstractmethod
    def enqueue(self, item: Enqueue) -> None:
        """Send one message (one round trip)."""

    @abstractmethod
    def enqueue_many(self, items: Sequence[Enqueue]) -> None:
        """Send many messages in as few round trips as possible."""

    # ---- consumer side (asyncio) ----------------------------------------------------------------
    def for_worker(self, *, max_owned: int = 0) -> Broker:
        """The broker a worker consumes through: its own connections where the broker has any, so
        that several workers (or a worker and producers) in one process never share a connection.
        ``max_owned``: the most deliveries the worker owns at once (its concurrency plus one fetch),
        which lets the broker size the reads that check ownership."""
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
    async def settle(self, consumer: str, settlements: Sequence[Settlement]) -> list[Delivery]:
        """Record outcomes of deliveries still owned by ``consumer``; return the fenced-out ones.

        Results are not written here (see :class:`ResultSettling`): the worker checks ownership with
        :meth:`extend` first and writes only the results of deliveries it still owns.
        """

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

    def send_control(self, command: str, destination: Sequence[str] = ()) -> None:
        """Send a command (``shutdown``, ``heartbeat``) to live workers (``destination``: their ids;
        empty: all), through the stream :meth:`sync_revoked` follows."""
        raise BrokerError(f"{type(self).__name__} does not support worker control")

    def take_controls(self) -> list[ControlCommand]:
        """The commands read since the last call (by :meth:`sync_revoked` or a fetch), sent after this
        consumer opened."""
        return []

    def close_sync(self) -> None:  # noqa: B027 - optional hook
        """Release producer-side resources."""

    def close_idle_sync(self) -> None:  # noqa: B027 - optional hook
        """Close idle synchronous connections (a worker, after its start-up checks)."""
