"""The worker's side of flow control: decide, before a task starts, whether it may start now.

The worker asks :meth:`Gate.admit` only for tasks that declare a limit (or got one at run time):
unlimited tasks cost one dictionary lookup. The answer is one of

* ``run``: start now (a concurrency slot, if any, is held until :meth:`Gate.finished`);
* ``deferred``: over the rate: ``rate_acquire.lua`` gave it a turn in the limiter's line and its start
  time, and ``rate_park.lua`` acked the delivery and put the message, marked with both (``rl``: the
  time, ms; ``rt``: the turn, us), in the queue's delayed set; the worker slot is free at once. When it
  is reached again, ``rate_check.lua`` (batched like the reservations) starts it only at the head of
  the line, and hands it back again when an earlier turn still waits or when the line slipped (its
  head started more than ``LATE_TOLERANCE_MS`` late: a stalled worker, or a flood still being handed
  back ahead of it in the stream): FIFO among the waiting holds, and starts never bunch up above the
  rate. A message marked with a time only (``rl`` without ``rt``: per-worker limits, or an older
  celeriac) starts at its time, or asks again when it starts late;
* ``expired``: its reserved time would come after its ``expires``: dropped now, state REVOKED;
* ``parked``: over a concurrency limit: ``conc_acquire.lua`` already moved it out of the stream into a
  wait list, from which a finishing task (or the sweep, for a dead worker's slot) moves it back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from .._redis.client import async_client, to_str, translate_errors
from .._redis.keys import GROUP
from .keys import FlowKeys, script
from .rates import Rate, parse_rate

if TYPE_CHECKING:
    import redis.asyncio

    from ..app import Celeriac
    from ..broker.base import Delivery

logger = logging.getLogger("celeriac.worker")

#: how often a worker reads rates set at run time and paused queues (one HGETALL), renews its
#: concurrency slots and moves parked messages into slots freed by dead workers
FLOW_REFRESH_S = 5.0
#: marker of a message whose start time a rate limiter reserved (its value: that time, ms)
RESERVED = "rl"
#: marker of a message's turn in a global rate limiter's line (us; see rate_acquire.lua)
TURN = "rt"
#: marker of a message parked under a concurrency limit (so that, should it expire before it gets a
#: slot, it is reported REVOKED as having waited behind the limit: ``Execution.expired``)
PARKED = "cl"
#: a reserved message starting later than this past its time asks the limiter again
LATE_TOLERANCE_MS = 100
#: a turn this long past its time was lost (its task purged, or its worker killed between the
#: reservation and the hand-back): the tasks behind it stop waiting for it (rate_check.lua)
LOST_TURN_MS = 30_000
#: longest wait of a task sent round behind an earlier turn that is overdue (rate_check.lua)
ROUND_MAX_MS = 1_000
#: a start due within this many ms starts now rather than being handed back (see rate_acquire.lua)
SLACK_MS = 5


@dataclass(frozen=True)
class Admission:
    kind: Literal["run", "deferred", "expired", "parked"]
    eta_ms: int = 0
    reason: str = ""


RUN = Admission("run")


class _Ask:
    """One rate-limited delivery waiting for the next flush of the gate."""

    __slots__ = ("answer", "at", "d", "expires", "local", "message", "name", "rate", "turn", "waited")

    def __init__(
        self, d: Delivery, message: Any, rate: Rate, name: str, expires: int, at: int = 0, turn: int = 0
    ) -> None:
        self.d, self.message, self.rate, self.name, self.expires = d, message, rate, name, expires
        #: 0: not decided yet (global); > 0 reserved start time (us; ms under a per-worker limit);
        #: < 0 expired
        self.at = at
        #: decided by this worker's own limiter (rate_limit_scope="worker")
        self.local = at != 0
        #: its turn in a global limiter's line (us; 0: none yet), and whether it held one when it came
        self.turn = turn
        self.waited = turn != 0
        self.answer: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()


#: deliveries handed back per rate_park.lua call (one call must stay short: it blocks Redis)
_PARK_CHUNK = 500


@dataclass
class _Held:
    queue: str
    name: str
    limit: int


class Gate:
    """Flow control of one worker (see the module docstring).

    Args:
        app: the app (its tasks' limits, its codec).
        url, prefix: the broker's Redis and key prefix.
        lease_ms: how long a concurrency slot stays held without renewal.
        clock: wall clock (s) for worker-scope limits.
        client: an asyncio client to use (the worker's broker's, shared; not closed here); None: the
            gate makes its own.
    """

    def __init__(
        self,
        app: Celeriac,
        url: str,
        prefix: str,
        lease_ms: int,
        clock: Callable[[], float] = time.time,
        client: redis.asyncio.Redis | None = None,
    ) -> None:
        self.app = app
        self.url = url
        self._shared = client
        self.keys = FlowKeys(prefix)
        self.lease_ms = lease_ms
        self.clock = clock
        self.paused: set[str] = set()
        self.overrides: dict[str, Rate | None] = {}
        self._client: redis.asyncio.Redis | None = client
        self._local_tat: dict[str, float] = {}
        self._held: dict[tuple[str, str], _Held] = {}
        self._asks: list[_Ask] = []
        self._flusher: asyncio.Future[None] | None = None
        #: tasks handed back to wait for their turn under a rate limit; of those, reserved ones that
        #: started too late and asked again; tasks parked under a concurrency limit
        self.deferred = 0
        self.late = 0
        self.parked = 0

    @property
    def client(self) -> redis.asyncio.Redis:
        if self._client is None:
            self._client = async_client(self.url, max_connections=2)
        return self._client

    async def close(self) -> None:
        if self._client is not None and self._client is not self._shared:
            try:
                await self._client.aclose()
            except Exception:  # closing a dead connection
                pass
            self._client = None

    def consumed(self, queues: list[str]) -> list[str]:
        """``queues`` without the paused ones."""
        paused = self.paused
        return [q for q in queues if q not in paused] if paused else queues

    # ---- which tasks -----------------------------------------------------------------------------
    def rate_of(self, task: Any) -> Rate | None:
        name = task.name
        if name in self.overrides:
            return self.overrides[name]
        rate: Rate | None = getattr(task, "rate", None)
        return rate

    def limited(self, task: Any) -> bool:
        """Whether a task's start goes through :meth:`admit` (one dict lookup for unlimited tasks)."""
        return (
            getattr(task, "rate", None) is not None
            or getattr(task, "max_concurrency", None) is not None
            or task.name in self.overrides
        )

    # ---- admission ---------------------------------------------------------------------------------
    async def admit(self, d: Delivery, message: Any, task: Any) -> Admission:
        rate = self.rate_of(task)
        if rate is not None and (
            RESERVED not in message.extra or TURN in message.extra or self.reserved_late(message, task)
        ):
            admission = await self._rate(d, message, task, rate)
            if admission.kind != "run":
                return admission
        limit = getattr(task, "max_concurrency", None)
        if limit is not None:
            return await self._concurrency(d, message, task, limit)
        return RUN

    async def _rate(self, d: Delivery, message: Any, task: Any, rate: Rate) -> Admission:
        name = task.name
        key_fn = getattr(task, "rate_limit_key", None)
        if key_fn is not None:
            name = f"{name}:{key_fn(*message.args, **message.kwargs)}"
        expires = message.expires_ms or 0
        if getattr(task, "rate_limit_scope", "global") == "worker":
            at = self._local(name, rate, expires)
            if at <= 0:
                return RUN if at == 0 else self._expired(rate, name, expires)
            return await self._batched(_Ask(d, message, rate, name, expires, at))
        turn = message.extra.get(TURN) if message.extra else None
        return await self._batched(
            _Ask(d, message, rate, name, expires, turn=turn if isinstance(turn, int) else 0)
        )

    async def _batched(self, ask: _Ask) -> Admission:
        """Queue ``ask`` for the next flush (group commit: the first starts a flush at once, those that
        arrive meanwhile go in the next), so a fetch of many limited tasks costs two round trips."""
        self._asks.append(ask)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_asks())
        return await ask.answer

    async def _flush_asks(self) -> None:
        while self._asks:
            batch, self._asks = self._asks, []
            try:
                await self._decide(batch)
            except BaseException as exc:
                for ask in batch:
                    if not ask.answer.done():
                        ask.answer.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    async def _decide(self, batch: list[_Ask]) -> None:
        groups: dict[tuple[str, str, int, bool], list[_Ask]] = {}
        for ask in batch:
            if ask.at == 0:  # global: the limiter in Redis decides (new tasks, and those with a turn)
                groups.setdefault((ask.d.queue, ask.name, ask.rate.interval_us, ask.waited), []).append(ask)
        with translate_errors(self.url):
            # tasks that hold a turn first: one that starts leaves the line before new ones look at it
            for (queue, name, interval, waited), asks in sorted(groups.items(), key=lambda g: not g[0][3]):
                keys = [
                    self.keys.rate(queue, name),
                    self.keys.shift(queue, name),
                    self.keys.turns(queue, name),
                ]
                if waited:
                    args: list[Any] = [
                        interval,
                        max(LATE_TOLERANCE_MS * 1000, interval),
                        SLACK_MS * 1000,
                        LOST_TURN_MS * 1000,
                        ROUND_MAX_MS * 1000,
                    ]
                    for a in asks:
                        args += [a.turn, a.expires]
                    reply = await script("rate_check").run(self.client, keys, args)
                    for ask, value in zip(asks, reply):
                        if isinstance(value, bytes):
                            if value[:1] == b"n":  # its turn was gone: a new one, at the back
                                at, turn = value[1:].split(b":")
                                value, ask.turn = at, int(turn)
                            else:  # b"e<us>" early (the line slipped), b"h<us>" behind an earlier turn
                                self.late += 1
                                value = value[1:]
                        ask.at = int(value)
                else:
                    args = [interval, 1, SLACK_MS * 1000, LOST_TURN_MS * 1000, *(a.expires for a in asks)]
                    shift, *ats = await script("rate_acquire").run(self.client, keys, args)
                    for ask, at in zip(asks, ats):
                        ask.at = int(at)
                        if ask.at > 0:
                            ask.turn = ask.at - int(shift)
            parks: dict[str, list[Any]] = {}
            for ask in batch:
                if ask.at > 0:
                    extra = {**ask.message.extra, RESERVED: ask.at}
                    due: Any = ask.at
                    if not ask.local:
                        # the turn orders the line; the due time in ms keeps its microseconds (a fraction),
                        # so that starts less than a millisecond apart are promoted in their order
                        extra = {**extra, RESERVED: math.ceil(ask.at / 1000), TURN: ask.turn}
                        due = f"{ask.at / 1000:.3f}"
                    marked = self.app.codec.encode(replace(ask.message, extra=extra))
                    parks.setdefault(ask.d.queue, []).extend([ask.d.entry_id, due, marked])
            for queue, triples in parks.items():
                q = self.app.broker.keys.queue(queue)  # type: ignore[attr-defined]
                for start in range(0, len(triples), 3 * _PARK_CHUNK):
                    await script("rate_park").run(
                        self.client,
                        [q.ready, q.delayed],
                        [GROUP, q.wake, *triples[start : start + 3 * _PARK_CHUNK]],
                    )
        # the order of the answers is the order in which the worker starts them: tasks that waited their
        # turn before new ones of the same fetch
        for ask in sorted(batch, key=lambda a: not a.waited):
            if ask.at == 0:
                ask.answer.set_result(RUN)
            elif ask.at < 0:
                ask.answer.set_result(self._expired(ask.rate, ask.name, ask.expires))
            else:
                self.deferred += 1
                eta_ms = ask.at if ask.local else math.ceil(ask.at / 1000)
                ask.answer.set_result(
                    Admission("deferred", eta_ms=eta_ms, reason=f"rate limit {ask.rate} of {ask.name}")
                )

    def reserved_late(self, message: Any, task: Any) -> bool:
        """A message marked with a start time only (a per-worker limit, or an older celeriac) that
        starts well after it (a worker was stalled): it asks the limiter again, so that starts never
        bunch up."""
        at = message.extra.get(RESERVED)
        if not isinstance(at, int):
            return False
        rate = self.rate_of(task)
        tolerance_ms = max(LATE_TOLERANCE_MS, rate.interval_ms if rate is not None else 0.0)
        if int(self.clock() * 1000) - at > tolerance_ms:
            self.late += 1
            return True
        return False

    def _local(self, name: str, rate: Rate, expires_ms: int) -> int:
        """Celery's per-worker meaning: the same GCRA, in this process. 0 = now, -1 = expired, else the
        reserved start time (ms)."""
        now_ms = self.clock() * 1000
        tat = max(self._local_tat.get(name, 0.0), now_ms)
        if tat <= now_ms + SLACK_MS:
            self._local_tat[name] = tat + rate.interval_ms
            return 0
        if expires_ms and tat > expires_ms:
            return -1
        self._local_tat[name] = tat + rate.interval_ms
        return math.ceil(tat)

    def _expired(self, rate: Rate, name: str, expires_ms: int) -> Admission:
        when = time.strftime("%H:%M:%S", time.gmtime(expires_ms / 1000))
        return Admission(
            "expired",
            reason=f"before its turn under rate limit {rate} of {name} (expires {when} UTC)",
        )

    async def _concurrency(self, d: Delivery, message: Any, task: Any, limit: int) -> Admission:
        name = task.name
        key_fn = getattr(task, "concurrency_key", None)
        if key_fn is not None:
            name = f"{name}:{key_fn(*message.args, **message.kwargs)}"
        q = d.queue
        keys = [
            self.keys.holders(q, name),
            self.keys.waiting(q, name),
            self.keys.index(q),
            self.app.broker.keys.queue(q).ready,  # type: ignore[attr-defined]
        ]
        # parked as marked (one encoding, only for limited tasks): expired later, it is reported REVOKED
        data = (
            d.data
            if PARKED in message.extra
            else self.app.codec.encode(replace(message, extra={**message.extra, PARKED: 1}))
        )
        with translate_errors(self.url):
            took = await script("conc_acquire").run(
                self.client, keys, [GROUP, limit, self.lease_ms, d.entry_id, name, d.entry_id, data]
            )
        if int(took) == 1:
            self._held[(q, d.entry_id)] = _Held(q, name, limit)
            return RUN
        self.parked += 1
        return Admission("parked", reason=f"max_concurrency={limit} of {name}")

    async def forget_turn(self, d: Delivery, message: Any) -> None:
        """A message that waited in a global rate limiter's line is dropped unstarted (expired,
        revoked): take its turn out of the line now, so the tasks behind it do not wait for it."""
        turn = message.extra.get(TURN)
        task = self.app.tasks.get(message.task)
        if not isinstance(turn, int) or task is None:
            return
        name = task.name
        key_fn = getattr(task, "rate_limit_key", None)
        if key_fn is not None:
            try:
                name = f"{name}:{key_fn(*message.args, **message.kwargs)}"
            except Exception:  # the turn is dropped as lost after LOST_TURN_MS
                return
        with translate_errors(self.url):
            await self.client.zrem(self.keys.turns(d.queue, name), str(turn))

    async def expired_in_slot(self, d: Delivery, message: Any) -> None:
        """A parked message moved back into a free slot (``conc_release.lua``) but expired meanwhile:
        it never runs; free the slot it was given now rather than after its lease."""
        task = self.app.tasks.get(message.task)
        limit = getattr(task, "max_concurrency", None)
        if task is None or not limit:
            return
        name = task.name
        key_fn = getattr(task, "concurrency_key", None)
        if key_fn is not None:
            try:
                name = f"{name}:{key_fn(*message.args, **message.kwargs)}"
            except Exception:  # the slot frees when its lease expires
                return
        await self._release(d.queue, name, limit, [d.entry_id])

    async def finished(self, d: Delivery) -> None:
        """A task that held a concurrency slot ended: free it, and let a parked one in."""
        held = self._held.pop((d.queue, d.entry_id), None)
        if held is None:
            return
        await self._release(held.queue, held.name, held.limit, [d.entry_id])

    async def _release(self, queue: str, name: str, limit: int, holders: list[str]) -> int:
        keys = [
            self.keys.holders(queue, name),
            self.keys.waiting(queue, name),
            self.keys.index(queue),
            self.app.broker.keys.queue(queue).ready,  # type: ignore[attr-defined]
        ]
        with translate_errors(self.url):
            return int(
                await script("conc_release").run(
                    self.client, keys, [limit, name, self.lease_ms, *(holders or [""])]
                )
            )

    # ---- the refresh loop ----------------------------------------------------------------------------
    async def refresh(self, queues: list[str]) -> None:
        """Read run-time rates and paused queues; renew held slots; move parked messages into slots
        that dead workers held (their leases expired)."""
        concurrency = any(getattr(t, "max_concurrency", None) for t in self.app.tasks.values())
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.keys.config)
            for q in queues if concurrency else ():
                pipe.smembers(self.keys.index(q))
            config, *indexes = await pipe.execute()
        overrides: dict[str, Rate | None] = {}
        paused: set[str] = set()
        for k, v in config.items():
            field = to_str(k)
            if field.startswith("paused:"):
                paused.add(field[7:])
            elif field.startswith("rate:"):
                try:
                    overrides[field[5:]] = parse_rate(to_str(v))
                except ValueError:
                    logger.warning("ignoring run-time rate limit %r=%r (not a rate)", field[5:], to_str(v))
        self.overrides = overrides
        self.paused = paused
        by_key: dict[tuple[str, str], list[str]] = {}
        for (q, entry_id), held in self._held.items():
            by_key.setdefault((q, held.name), []).append(entry_id)
        with translate_errors(self.url):
            for (q, name), ids in by_key.items():
                await script("conc_renew").run(
                    self.client, [self.keys.holders(q, name)], [self.lease_ms, *ids]
                )
            for q, names in zip(queues, indexes):
                for raw in names:
                    name = to_str(raw)
                    task = self.app.tasks.get(name.split(":", 1)[0])
                    limit = getattr(task, "max_concurrency", None) if task is not None else None
                    if limit:
                        await self._release(q, name, limit, [])

    async def run_refresh(self, queues: list[str], stopped: Callable[[], bool]) -> None:
        """One step of the worker's flow loop (sleeps ``FLOW_REFRESH_S`` first)."""
        await asyncio.sleep(min(FLOW_REFRESH_S, self.lease_ms / 3000))
        if not stopped():
            await self.refresh(queues)
