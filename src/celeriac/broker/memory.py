"""MemoryBroker: the broker contract in this process, with the semantics of :class:`RedisBroker`.

Why not a simpler queue: tests written against ``memory://`` must fail the way production fails. So
this broker keeps everything the Redis one has: a FIFO of ready messages per queue, delayed messages
ordered by due time, leased deliveries with delivery counts used as fencing tokens, reclaim of expired
leases with dead-lettering after ``max_deliveries``, a capped dead-letter list, and worker liveness with
TTLs. It stores the encoded bytes, never Python objects, so a value that cannot be serialized fails
here as it would on Redis.

Why this module is long: it is the whole broker contract in one place, to be read side by side
with ``redis.py`` (and about a third of it is that documentation); the shared knobs and rules live in
``base.py``.

Threads: producers call :meth:`enqueue` from any thread while a worker's event loop awaits
:meth:`fetch`. One lock guards all state; a blocked fetch (or a scheduler sleeping in
:meth:`wait_wake`) is woken with ``loop.call_soon_threadsafe(event.set)``, never by polling.

Time: due times and lease ages are read from ``clock`` (epoch seconds), so tests can pass a fake clock
(see :class:`celeriac.testing.FakeClock`) and call :meth:`time_changed` after moving it. Blocking
timeouts (``block_ms``, ``timeout_s``) are real time, as they are for Redis.

Mapping to the Redis key schema (:mod:`celeriac._redis.keys`):

==========================  ==========================================================================
Redis                       here
==========================  ==========================================================================
``:ready`` stream + PEL     ``_QueueState.ready`` (undelivered, FIFO) + ``_QueueState.pending`` (leased)
``:delayed`` sorted set     ``_QueueState.delayed`` (member -> due ms) + a heap ordered like a zset
``:dead`` stream (capped)   ``_QueueState.dead`` (a deque trimmed to exactly ``dead_letter_max``)
``:wake`` channel           one subscription per event loop, opened by :meth:`open`
``worker:<id>`` + workers   ``_workers`` (fields and expiry in ms)
``queues`` set              ``_known_queues`` with one shared expiry, refreshed by heartbeats
==========================  ==========================================================================
"""

from __future__ import annotations

import asyncio
import heapq
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .._redis.keys import level_queue, split_level
from ..exceptions import BrokerError, ConfigurationError
from .base import (
    KNOWN_QUEUES_TTL_S,
    PROMOTE_BATCH,
    Broker,
    DeadLetter,
    Delivery,
    Enqueue,
    QueueStats,
    Settlement,
    WorkerInfo,
    due_ms,
    group_by_queue,
    max_deliveries_reason,
    task_id_of,
)
from .revoked import Revocation, RevokedMirror

__all__ = ["MemoryBroker"]

_REVOKE_POLL_S = 0.05  # how often sync_revoked(block_ms=...) looks again
_STREAM_ID = re.compile(r"^\d+-\d+$")


@dataclass(eq=False)
class _Entry:
    """One message in a queue. ``seq`` orders entries like stream ids do."""

    entry_id: str
    seq: int
    data: bytes


@dataclass(eq=False)
class _Lease:
    """A delivered, unsettled entry: Redis's pending-entries-list record."""

    entry: _Entry
    consumer: str
    deliveries: int
    last_ms: float  # time of the last delivery or renewal; float so release can push it to -inf


@dataclass
class _QueueState:
    ready: deque[_Entry] = field(default_factory=deque)
    pending: dict[str, _Lease] = field(default_factory=dict)
    delayed: dict[bytes, int] = field(default_factory=dict)
    # (due_ms, member) with lazy deletion: the dict above is the truth. Ties order by the member's
    # bytes, as a Redis sorted set orders equal scores.
    delayed_heap: list[tuple[int, bytes]] = field(default_factory=list)
    dead: deque[DeadLetter] = field(default_factory=deque)

    def delayed_head(self) -> int | None:
        """Due time of the earliest delayed message (dropping stale heap items)."""
        heap = self.delayed_heap
        while heap and self.delayed.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def park(self, data: bytes, due_ms: int) -> None:
        """ZADD: a member that is already parked only gets its due time updated."""
        self.delayed[data] = due_ms
        heapq.heappush(self.delayed_heap, (due_ms, data))


@dataclass(eq=False)
class _Waiter:
    """An asyncio.Event of one event loop, set from any thread. Used with the broker's lock held."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event
    queues: set[str]
    refs: int = 1  # opens sharing this subscription
    woken: bool = False  # a set() is already on its way: a bulk enqueue wakes the loop once

    def wake(self) -> None:
        if self.woken:
            return
        self.woken = True
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # the loop was closed without closing the broker: nobody is waiting
            pass

    def rearm(self) -> None:
        self.event.clear()
        self.woken = False


class MemoryBroker(Broker):
    """A thread-safe in-process broker with the semantics of the Redis broker (tests, ``memory://``).

    Args:
        dead_letter_max: cap on each queue's dead-letter list (exact here; approximate on Redis).
        clock: wall clock in epoch seconds, for due times, lease ages and TTLs (default
            :func:`time.time`). After moving a fake clock, call :meth:`time_changed`.
    """

    def __init__(
        self,
        *,
        dead_letter_max: int = 10_000,
        clock: Callable[[], float] = time.time,
        revoke_expires_s: float = 86_400.0,
        revoked_max: int = 100_000,
    ) -> None:
        if dead_letter_max < 1:
            raise ConfigurationError("dead_letter_max", f"must be >= 1, got {dead_letter_max!r}")
        self.dead_letter_max = dead_letter_max
        self.clock = clock
        self._lock = threading.Lock()
        self._queues: dict[str, _QueueState] = {}
        self._last_id_ms = -1
        self._id_seq = 0
        self._seq = 0
        self._fetchers: set[_Waiter] = set()
        self._subscribers: dict[asyncio.AbstractEventLoop, _Waiter] = {}  # opened: wake-ups buffered
        self._transient: set[_Waiter] = set()  # wait_wake without open: not buffered
        self._workers: dict[str, tuple[dict[str, str], int]] = {}
        self._known_queues: set[str] = set()
        self._known_queues_expire_ms = 0
        self._levels: dict[str, set[int]] = {}  # queue -> priority levels used (level queues exist)
        self._unique: dict[tuple[str, str], tuple[str, int]] = {}  # (queue, key) -> (task id, expiry ms)
        # revocations: every consumer of this broker shares the one mirror (one process); the log
        # lets each event loop learn the revocations it has not seen (terminate)
        self._revocations = RevokedMirror(int(revoke_expires_s * 1000), revoked_max)
        self._revoked_log: list[Revocation] = []
        self._revoked_seen: dict[asyncio.AbstractEventLoop, int] = {}

    def __repr__(self) -> str:
        return f"<MemoryBroker queues={sorted(self._queues)}>"

    # ---- helpers (call with the lock held) -------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _queue(self, name: str) -> _QueueState:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = _QueueState()
        return q

    def _next_id(self, now_ms: int) -> tuple[str, int]:
        """A stream-like id ``<ms>-<seq>``, strictly increasing even if the clock goes back."""
        if now_ms > self._last_id_ms:
            self._last_id_ms, self._id_seq = now_ms, 0
        else:
            self._id_seq += 1
        self._seq += 1
        return f"{self._last_id_ms}-{self._id_seq}", self._seq

    def _append_ready(self, name: str, q: _QueueState, data: bytes, now_ms: int) -> None:
        entry_id, seq = self._next_id(now_ms)
        q.ready.append(_Entry(entry_id, seq, data))
        for waiter in self._fetchers:
            if name in waiter.queues:
                waiter.wake()

    def _dead_letter(self, q: _QueueState, data: bytes, reason: str, now_ms: int) -> None:
        entry_id, _ = self._next_id(now_ms)
        q.dead.append(DeadLetter(entry_id, task_id_of(data), data, reason, now_ms))
        while len(q.dead) > self.dead_letter_max:
            q.dead.popleft()

    def _publish_wake(self, name: str) -> None:
        for sub in (*self._subscribers.values(), *self._transient):
            if name in sub.queues:
                sub.wake()

    def _owned(self, q: _QueueState, consumer: str) -> dict[str, int]:
        """This consumer's leases as id -> delivery count (the fencing check of every Lua script)."""
        return {i: lease.deliveries for i, lease in q.pending.items() if lease.consumer == consumer}

    # ---- producer (sync) -------------------------------------------------------------------------
    def enqueue(self, item: Enqueue) -> None:
        """Send one message: ready now, or parked until its due time."""
        self.enqueue_many([item])

    def enqueue_many(self, items: Sequence[Enqueue]) -> None:
        """Send many messages, atomically with respect to consumers."""
        if not items:
            return
        with self._lock:
            now_ms = self._now_ms()
            heads: dict[str, int | None] = {}
            for item in items:
                q = self._queue(item.queue)
                data = bytes(item.data)
                if item.delay_ms is None and item.eta_ms is None:
                    self._append_ready(item.queue, q, data, now_ms)
                    continue
                if item.queue not in heads:
                    heads[item.queue] = q.delayed_head()
                due = due_ms(item.eta_ms, item.delay_ms, now_ms)
                q.park(data, due)
            for name, before in heads.items():
                after = self._queue(name).delayed_head()
                if before is None or (after is not None and after < before):
                    self._publish_wake(name)

    # ---- consumer (asyncio) ----------------------------------------------------------------------
    async def open(self, queues: Sequence[str]) -> None:
        """Subscribe this event loop to the wake-ups of ``queues`` (buffered until :meth:`wait_wake`)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for name in queues:
                self._queue(name)
            sub = self._subscribers.get(loop)
            if sub is None:
                self._subscribers[loop] = _Waiter(loop, asyncio.Event(), set(queues))
            else:  # several workers on one loop share the subscription
                sub.queues.update(queues)
                sub.refs += 1

    async def close(self) -> None:
        """Drop this loop's subscription. Messages stay: the broker lives as long as the app."""
        loop = asyncio.get_running_loop()
        with self._lock:
            sub = self._subscribers.get(loop)
            if sub is not None:
                sub.refs -= 1
                if sub.refs <= 0:
                    del self._subscribers[loop]

    async def fetch(self, queues: Sequence[str], consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """Lease up to ``count`` ready messages in queue priority order; block up to ``block_ms``.

        As on Redis: with several queues, a blocked fetch returns the first message that arrives.
        """
        await asyncio.sleep(0)  # a Redis call always suspends: keep the worker's loops fair
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        waiter: _Waiter | None = None
        limit = count
        try:
            while True:
                with self._lock:
                    out = self._take(queues, consumer, limit)
                    remaining = deadline - loop.time()
                    if out or not block_ms or remaining <= 0:
                        return out
                    # register (or re-arm) under the lock: an enqueue after it is released will wake us
                    if waiter is None:
                        waiter = _Waiter(loop, asyncio.Event(), set(self._expand(queues)))
                        self._fetchers.add(waiter)
                    else:
                        waiter.rearm()
                if len(queues) > 1:
                    limit = 1  # XREADGROUP BLOCK over several streams is served one message
                try:
                    await asyncio.wait_for(waiter.event.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        finally:
            if waiter is not None:
                with self._lock:
                    self._fetchers.discard(waiter)

    def _take(self, queues: Sequence[str], consumer: str, count: int) -> list[Delivery]:
        out: list[Delivery] = []
        now_ms = self._now_ms()
        for name in self._expand(queues):
            q = self._queue(name)
            while q.ready and len(out) < count:
                entry = q.ready.popleft()
                q.pending[entry.entry_id] = _Lease(entry, consumer, 1, now_ms)
                out.append(Delivery(name, entry.entry_id, entry.data, 1))
            if len(out) >= count:
                break
        return out

    def _expand(self, queues: Iterable[str]) -> list[str]:
        """Queue names with their priority levels, highest first (as RedisBroker reads them)."""
        return [
            n
            for name in queues
            for n in (name, *(level_queue(name, lv) for lv in sorted(self._levels.get(name, ()))))
        ]

    def _dead_queue(self, name: str) -> _QueueState:
        """Where dead letters of a (level) queue go: the queue's own dead letters."""
        return self._queue(split_level(name)[0])

    async def settle(self, consumer: str, settlements: Sequence[Settlement]) -> list[Delivery]:
        """Record outcomes of deliveries still owned by ``consumer``; return the fenced-out ones.

        Results are never written here (no :class:`~celeriac.broker.base.ResultSettling`): the worker
        stores them in the result backend first.
        """
        await asyncio.sleep(0)
        fenced: list[Delivery] = []
        with self._lock:
            now_ms = self._now_ms()
            for name, group in group_by_queue(settlements, lambda s: s.delivery.queue).items():
                q = self._queue(name)
                owned = self._owned(q, consumer)  # read once per queue, as settle.lua does
                head_before = q.delayed_head()
                woke = False
                acked: list[str] = []
                for s in group:
                    d = s.delivery
                    if owned.get(d.entry_id) != d.deliveries:
                        fenced.append(d)
                        continue
                    acked.append(d.entry_id)
                    if s.kind == "retry":
                        due = due_ms(s.eta_ms, s.delay_ms, now_ms)
                        q.park(bytes(s.data), due)
                        if head_before is None or due < head_before:
                            head_before, woke = due, True
                    elif s.kind == "dead":
                        self._dead_letter(self._dead_queue(name), bytes(s.data), s.reason, now_ms)
                    if s.unique is not None and s.kind != "retry":
                        self._release_unique(name, s.unique, s.task_id)
                for entry_id in acked:
                    q.pending.pop(entry_id, None)
                if woke:
                    self._publish_wake(name)
        return fenced

    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Renew the leases of ``deliveries`` still owned (same consumer and delivery count)."""
        await asyncio.sleep(0)
        lost: list[Delivery] = []
        with self._lock:
            now_ms = self._now_ms()
            for d in deliveries:
                lease = self._queue(d.queue).pending.get(d.entry_id)
                if lease is None or lease.consumer != consumer or lease.deliveries != d.deliveries:
                    lost.append(d)
                else:
                    lease.last_ms = now_ms
        return lost

    async def reclaim(
        self, queue: str, consumer: str, count: int, lease_ms: int, max_deliveries: int
    ) -> tuple[list[Delivery], int]:
        """Take over up to ``count`` leases idle for ``lease_ms`` or more, oldest entry first.

        A lease already delivered ``max_deliveries`` times is dead-lettered instead (it counts toward
        ``count``, as in ``reclaim.lua``).
        """
        await asyncio.sleep(0)
        out: list[Delivery] = []
        dead = 0
        with self._lock:
            now_ms = self._now_ms()
            for name in self._expand([queue]):
                got, n = self._reclaim(name, consumer, count - len(out), lease_ms, max_deliveries, now_ms)
                out += got
                dead += n
        return out, dead

    def _reclaim(
        self, queue: str, consumer: str, count: int, lease_ms: int, max_deliveries: int, now_ms: int
    ) -> tuple[list[Delivery], int]:
        out: list[Delivery] = []
        dead = 0
        q = self._queue(queue)
        expired = sorted(
            (lease for lease in q.pending.values() if now_ms - lease.last_ms >= lease_ms),
            key=lambda lease: lease.entry.seq,
        )[: max(0, count)]
        for lease in expired:
            entry = lease.entry
            if lease.deliveries >= max_deliveries:
                reason = max_deliveries_reason(max_deliveries, lease.deliveries)
                self._dead_letter(self._dead_queue(queue), entry.data, reason, now_ms)
                del q.pending[entry.entry_id]
                dead += 1
            else:
                lease.consumer, lease.deliveries, lease.last_ms = consumer, lease.deliveries + 1, now_ms
                out.append(Delivery(queue, entry.entry_id, entry.data, lease.deliveries))
        return out, dead

    async def promote(self, queue: str) -> float | None:
        """Move due delayed messages to ready (earliest first); seconds until the next one, or None."""
        await asyncio.sleep(0)
        heads: list[int] = []
        with self._lock:
            now_ms = self._now_ms()
            for name in self._expand([queue]):
                q = self._queue(name)
                for _ in range(PROMOTE_BATCH):
                    head = q.delayed_head()
                    if head is None or head > now_ms:
                        break
                    _, data = heapq.heappop(q.delayed_heap)
                    del q.delayed[data]
                    self._append_ready(name, q, data, now_ms)
                head = q.delayed_head()
                if head is not None:
                    heads.append(head)
        if not heads:
            return None
        return max(0.0, (min(heads) - now_ms) / 1000)

    async def wait_wake(self, queues: Sequence[str], timeout_s: float) -> None:
        """Return when a delayed message became the earliest of one of ``queues`` (or the clock was
        moved, see :meth:`time_changed`), or at timeout.

        A wake-up published since the last call returns at once, as a Redis subscription buffers it.
        """
        loop = asyncio.get_running_loop()
        temporary: _Waiter | None = None
        with self._lock:
            sub = self._subscribers.get(loop)
            if sub is None or not sub.queues.issuperset(queues):
                # not opened for these queues: only wake-ups from now on count
                sub = temporary = _Waiter(loop, asyncio.Event(), set(queues))
                self._transient.add(temporary)
        try:
            await asyncio.wait_for(sub.event.wait(), max(0.0, timeout_s))
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                sub.rearm()
                if temporary is not None:
                    self._transient.discard(temporary)

    def time_changed(self) -> None:
        """Wake every scheduler sleeping in :meth:`wait_wake` (call after moving a fake clock)."""
        with self._lock:
            for sub in (*self._subscribers.values(), *self._transient):
                sub.wake()

    async def pending(self, queue: str, consumer: str) -> list[Delivery]:
        """Deliveries of ``queue`` leased to ``consumer``, oldest entry first (``data`` left empty)."""
        await asyncio.sleep(0)
        with self._lock:
            out = []
            for name in self._expand([queue]):
                leases = sorted(self._queue(name).pending.values(), key=lambda lease: lease.entry.seq)
                out += [
                    Delivery(name, x.entry.entry_id, b"", x.deliveries)
                    for x in leases
                    if x.consumer == consumer
                ]
            return out

    async def release(self, consumer: str, deliveries: Sequence[Delivery], *, started: bool) -> int:
        """Give owned deliveries back: unstarted ones re-queued fresh at the tail (the delivery does not
        count), started ones left leased but expired, so any worker reclaims them at once."""
        await asyncio.sleep(0)
        n = 0
        with self._lock:
            now_ms = self._now_ms()
            owned: dict[str, dict[str, int]] = {}
            for d in deliveries:
                q = self._queue(d.queue)
                if d.queue not in owned:
                    owned[d.queue] = self._owned(q, consumer)
                if owned[d.queue].get(d.entry_id) != d.deliveries:
                    continue
                lease = q.pending[d.entry_id]
                if started:
                    lease.last_ms = float("-inf")
                else:
                    del q.pending[d.entry_id]
                    self._append_ready(d.queue, q, lease.entry.data, now_ms)
                n += 1
        return n

    async def heartbeat(
        self, worker_id: str, fields: dict[str, str], ttl_s: float, queues: Sequence[str]
    ) -> None:
        """Publish this worker's liveness for ``ttl_s`` (fields merge into the previous ones)."""
        await asyncio.sleep(0)
        with self._lock:
            now_ms = self._now_ms()
            self._prune_workers(now_ms)
            previous = self._workers.get(worker_id)
            merged = {**(previous[0] if previous else {}), **fields}
            self._workers[worker_id] = (merged, now_ms + int(ttl_s * 1000))
            if queues:
                self._known_queues.update(queues)
                self._known_queues_expire_ms = now_ms + KNOWN_QUEUES_TTL_S * 1000

    async def unregister(self, worker_id: str) -> None:
        """Remove this worker's liveness entry."""
        await asyncio.sleep(0)
        with self._lock:
            self._workers.pop(worker_id, None)

    def _prune_workers(self, now_ms: int) -> None:
        # a Redis key is gone once the time is past its expiry
        for worker_id in [w for w, (_, expires) in self._workers.items() if now_ms > expires]:
            del self._workers[worker_id]

    # ---- admin (sync) ----------------------------------------------------------------------------
    def queue_names(self) -> list[str]:
        """Every queue this broker has seen (sent to, opened or fetched from), sorted."""
        with self._lock:
            return sorted(self._queues)

    def stats(self, queue: str) -> QueueStats:
        """Counts of ready, delayed, running (leased) and dead-lettered messages."""
        with self._lock:
            dead = len((self._queues.get(queue) or _QueueState()).dead)
            parts = [self._queues.get(name) or _QueueState() for name in self._expand([queue])]
            return QueueStats(
                queue,
                sum(len(q.ready) for q in parts),
                sum(len(q.delayed) for q in parts),
                sum(len(q.pending) for q in parts),
                dead,
            )

    def known_queues(self) -> list[str]:
        """Queues that workers consumed (kept 7 days after the last heartbeat, as on Redis)."""
        with self._lock:
            if self._now_ms() > self._known_queues_expire_ms:
                self._known_queues.clear()
            return sorted(self._known_queues)

    def workers(self) -> list[WorkerInfo]:
        """Live workers, soonest-expiring first (the Redis broker's order)."""
        with self._lock:
            self._prune_workers(self._now_ms())
            rows = sorted(self._workers.items(), key=lambda item: (item[1][1], item[0]))
            return [WorkerInfo(worker_id, dict(fields)) for worker_id, (fields, _) in rows]

    def dead_letters(self, queue: str, count: int) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of a queue."""
        with self._lock:
            q = self._queues.get(queue)
            return list(q.dead)[: max(0, count)] if q else []

    def replay_dead(self, queue: str, count: int, entry_id: str | None = None) -> int:
        """Move the oldest ``count`` dead letters (or the one ``entry_id``) back to ready."""
        if entry_id and not _STREAM_ID.match(entry_id):
            raise BrokerError(f"invalid dead-letter id {entry_id!r} (expected <ms>-<seq>)")
        with self._lock:
            q = self._queue(queue)
            chosen: Iterable[DeadLetter]
            if entry_id:
                chosen = [dl for dl in q.dead if dl.entry_id == entry_id]
            else:
                chosen = list(q.dead)[: max(0, count)]
            now_ms = self._now_ms()
            n = 0
            for dl in chosen:
                q.dead.remove(dl)
                self._append_ready(queue, q, dl.data, now_ms)
                n += 1
            return n

    def purge_dead(self, queue: str) -> int:
        """Delete all dead letters of a queue; return how many."""
        with self._lock:
            q = self._queues.get(queue)
            if q is None:
                return 0
            n = len(q.dead)
            q.dead.clear()
            return n

    def purge(self, queue: str) -> int:
        """Delete the ready and delayed messages of a queue (running ones finish and settle as usual)."""
        with self._lock:
            n = 0
            for name in self._expand([queue]):
                q = self._queues.get(name)
                if q is None:
                    continue
                n += len(q.ready) + len(q.delayed)
                q.ready.clear()
                q.delayed.clear()
                q.delayed_heap.clear()
            return n

    # ---- task control ----------------------------------------------------------------------------
    def enqueue_one(
        self,
        item: Enqueue,
        *,
        task_id: str,
        level: int = 0,
        unique_key: str | None = None,
        unique_ttl_ms: int = 0,
    ) -> str:
        """As ``enqueue_one.lua``: the lock check, the level and the enqueue in one step."""
        base = split_level(item.queue)[0]
        with self._lock:
            if unique_key is not None:
                now_ms = self._now_ms()
                holder = self._unique.get((base, unique_key))
                if holder is not None and holder[1] > now_ms:
                    return holder[0]
                self._unique[(base, unique_key)] = (task_id, now_ms + max(1, unique_ttl_ms))
            if level > 0:
                self._levels.setdefault(base, set()).add(level)
                for waiter in self._fetchers:
                    if base in waiter.queues:
                        waiter.queues.add(level_queue(base, level))
        self.enqueue_many([Enqueue(level_queue(base, level), item.data, item.delay_ms, item.eta_ms)])
        return task_id

    def _release_unique(self, queue: str, unique_key: str, task_id: str) -> None:
        key = (split_level(queue)[0], unique_key)
        holder = self._unique.get(key)
        if holder is not None and holder[0] == task_id:
            del self._unique[key]

    async def release_unique(self, queue: str, unique_key: str, task_id: str) -> None:
        await asyncio.sleep(0)
        with self._lock:
            self._release_unique(queue, unique_key, task_id)

    def unique_holder(self, queue: str, unique_key: str) -> str | None:
        """The task id holding a unique lock, or None (tests)."""
        with self._lock:
            holder = self._unique.get((queue, unique_key))
            return holder[0] if holder is not None and holder[1] > self._now_ms() else None

    def revoke(
        self, task_ids: Sequence[str], *, terminate: bool, signal: str, ttl_s: float, max_entries: int
    ) -> None:
        with self._lock:
            now_ms = self._now_ms()
            for task_id in task_ids:
                revocation = Revocation(task_id, now_ms, terminate, signal)
                self._revocations.add(revocation)
                self._revoked_log.append(revocation)
            del self._revoked_log[: max(0, len(self._revoked_log) - max_entries)]
            self._revocations.expire(now_ms)

    async def sync_revoked(self, block_ms: int = 0) -> list[Revocation]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        while True:
            with self._lock:
                seen = self._revoked_seen.get(loop)
                if seen is None or seen > len(self._revoked_log):  # first call, or the log was cut
                    seen = 0 if seen is None else len(self._revoked_log)
                new = self._revoked_log[seen:]
                self._revoked_seen[loop] = len(self._revoked_log)
            if new or loop.time() >= deadline:
                return new
            await asyncio.sleep(min(_REVOKE_POLL_S, max(0.0, deadline - loop.time())))
