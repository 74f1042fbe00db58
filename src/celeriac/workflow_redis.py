"""Workflow plans carried out in Redis (see :mod:`celeriac.workflow` for what a plan is).

Every script touches the keys of one queue, all under the queue's hash tag, so each is atomic on
Redis Cluster too: ``dispatch.lua`` (successors into a queue, each once), ``chord_init.lua`` and
``chord_part.lua`` (a chord's hash lives in its body queue's slot, so the last count and the body's
XADD are one script). A plan is one pipelined round trip; a failed chord's follow-up is a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio

from ._redis import async_client, sync_client, to_str, translate_errors
from .broker import scripts
from .broker.base import Enqueue
from .broker.scripts import Batch
from .exceptions import ChordError
from .states import TaskState

if TYPE_CHECKING:
    from .app import Celeriac
    from .workflow import Plan

# messages or parts per script call (a few thousand arguments: Redis is never blocked long)
_CHUNK = 1000
# a chord's state lives at least this long (seconds), refreshed by every member that finishes
_MIN_CHORD_TTL_S = 3600.0


class RedisWorkflowStore:
    """Applies plans on the broker's Redis. One per app (producer side) and one per worker."""

    def __init__(self, app: Celeriac, url: str, prefix: str) -> None:
        self.app = app
        self.url = url
        self.prefix = prefix
        self._sync: redis.Redis | None = None
        self._aio: redis.asyncio.Redis | None = None
        #: script calls made (benchmarks count Redis commands per chord member)
        self.calls = 0

    # ---- keys -------------------------------------------------------------------------------------
    def chord_key(self, queue: str, chord_id: str) -> str:
        return f"{self.prefix}:{{{queue}}}:chord:{chord_id}"

    def fired_key(self, queue: str) -> str:
        return f"{self.prefix}:{{{queue}}}:fired"

    def _queue(self, queue: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:{{{queue}}}"
        return f"{base}:ready", f"{base}:delayed", f"{base}:wake"

    @property
    def ttl_ms(self) -> int:
        """TTL of chord state and dispatch keys: ``result_expires`` but at least an hour, so that a
        tiny ``result_expires`` (Celery's ``0`` bug, #5237) cannot delete a chord that still waits."""
        return int(max(self.app.conf.result_expires_s, _MIN_CHORD_TTL_S) * 1000)

    # ---- building the calls ----------------------------------------------------------------------
    def _calls(
        self, plan: Plan, dedup: bool
    ) -> tuple[list[tuple[Any, list[Any], list[Any]]], list[tuple[str, str]]]:
        """Script calls in plan order; the second list names the chord of each chord_part call."""
        ttl = self.ttl_ms
        calls: list[tuple[Any, list[Any], list[Any]]] = []
        for c in plan.chords:
            calls.append(
                (
                    scripts.CHORD_INIT,
                    [self.chord_key(c.queue, c.chord_id), self.fired_key(c.queue)],
                    [
                        c.key or c.chord_id,
                        c.size,
                        c.body,
                        ttl,
                        "1" if dedup else "0",
                        "1" if c.needs_values else "0",
                    ],
                )
            )
        if dedup:
            by_queue: dict[str, list[Any]] = {}
            for s in plan.sends:
                by_queue.setdefault(s.queue, []).extend(
                    [
                        s.key,
                        "" if s.delay_ms is None else s.delay_ms,
                        "" if s.eta_ms is None else s.eta_ms,
                        s.data,
                    ]
                )
            for queue, args in by_queue.items():
                ready, delayed, wake = self._queue(queue)
                for start in range(0, len(args), 4 * _CHUNK):
                    calls.append(
                        (
                            scripts.DISPATCH,
                            [ready, delayed, self.fired_key(queue)],
                            [wake, ttl, *args[start : start + 4 * _CHUNK]],
                        )
                    )
        parts: dict[tuple[str, str], list[Any]] = {}
        for p in plan.parts:
            parts.setdefault((p.queue, p.chord_id), []).extend([p.index, "s" if p.ok else "f", p.payload])
        names: list[tuple[str, str]] = []
        for (queue, chord_id), args in parts.items():
            for start in range(0, len(args), 3 * _CHUNK):
                calls.append(
                    (
                        scripts.CHORD_PART,
                        [self.chord_key(queue, chord_id), self._queue(queue)[0]],
                        [ttl, *args[start : start + 3 * _CHUNK]],
                    )
                )
                names.append((queue, chord_id))
        return calls, names

    def _follow_up(self, names: list[tuple[str, str]], replies: Sequence[Any]) -> Plan | None:
        from .workflow import Plan, chord_failed

        follow = Plan()
        for (queue, chord_id), reply in zip(names, replies):
            if reply and to_str(reply[0]) == "failed":
                follow.extend(chord_failed(self.app, queue, chord_id, reply[1], reply[2]))
        return follow if follow else None

    # ---- synchronous (clients, admin, tasks replacing themselves) ---------------------------------
    @property
    def sync(self) -> redis.Redis:
        if self._sync is None:
            self._sync = sync_client(self.url)
        return self._sync

    def apply_sync(self, plan: Plan, *, dedup: bool) -> None:
        """Carry out ``plan``. ``dedup``: skip what was dispatched before (a worker's successors);
        a client's first send has nothing to skip and takes the bulk path."""
        if not plan:
            return
        backend = self.app.backend
        if plan.stores and backend is not None:
            backend.store(plan.stores)
        calls, names = self._calls(plan, dedup)
        n_parts = len(names)
        head, tail = calls[: len(calls) - n_parts], calls[len(calls) - n_parts :]
        with translate_errors(self.url):
            if head:
                self._run_sync(head)
            if not dedup and plan.sends:
                self.app.broker.enqueue_many(
                    [Enqueue(s.queue, s.data, s.delay_ms, s.eta_ms) for s in plan.sends]
                )
            replies = self._run_sync(tail) if tail else []
            if plan.forget:
                self.sync.delete(*[self.chord_key(q, c) for q, c in plan.forget])
        follow = self._follow_up(names, replies)
        if follow is not None:
            self.apply_sync(follow, dedup=True)

    def _run_sync(self, calls: list[tuple[Any, list[Any], list[Any]]]) -> list[Any]:
        pipe = self.sync.pipeline(transaction=False)
        batch = Batch()
        for script, keys, args in calls:
            batch.add(pipe, script, keys, args)
        self.calls += len(calls)
        return batch.repair(self.sync, pipe.execute(raise_on_error=False))

    def chord_values_sync(self, queue: str, chord_id: str) -> list[Any]:
        with translate_errors(self.url):
            fields = self.sync.hgetall(self.chord_key(queue, chord_id))
        return self._values(chord_id, fields)

    # ---- asyncio (the worker) ------------------------------------------------------------------------
    def _client(self) -> redis.asyncio.Redis:
        if self._aio is None:
            self._aio = async_client(self.url, max_connections=2)
        return self._aio

    async def apply(self, plan: Plan) -> None:
        """Carry out a worker's plan (successors deduplicated): one round trip, plus one when a
        chord failed."""
        if not plan:
            return
        backend = self.app.backend
        if plan.stores and backend is not None:
            await backend.store_async(plan.stores)
        calls, names = self._calls(plan, True)
        client = self._client()
        with translate_errors(self.url):
            pipe = client.pipeline(transaction=False)
            batch = Batch()
            for script, keys, args in calls:
                batch.add(pipe, script, keys, args)
            if plan.forget:
                pipe.delete(*[self.chord_key(q, c) for q, c in plan.forget])
                batch.command()
            self.calls += len(calls) + (1 if plan.forget else 0)
            replies = await batch.arepair(client, await pipe.execute(raise_on_error=False))
        follow = self._follow_up(names, replies[len(calls) - len(names) : len(calls)])
        if follow is not None:
            await self.apply(follow)

    async def chord_values(self, queue: str, chord_id: str) -> list[Any]:
        """The header's values of a chord whose body starts, in member order."""
        with translate_errors(self.url):
            fields = await self._client().hgetall(self.chord_key(queue, chord_id))
        return self._values(chord_id, fields)

    def _values(self, chord_id: str, fields: dict[Any, Any]) -> list[Any]:
        n = fields.get(b"n")
        if n is None:
            raise ChordError(
                f"the state of chord {chord_id} is gone (it expired: a chord's state lives "
                f"max(result_expires, {_MIN_CHORD_TTL_S:.0f} s) after its last member finished)"
            )
        from .workflow import chord_values

        payloads: list[bytes] = [b""] * int(n)
        for key, payload in fields.items():
            if key[:1] == b"r":
                payloads[int(key[1:])] = payload
        return chord_values(self.app, chord_id, payloads)

    async def close(self) -> None:
        if self._aio is not None:
            await self._aio.aclose()
            self._aio = None

    def close_sync(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None


class WorkflowHook:
    """The worker's hook: a chord body gets its values before it runs; after a workflow task's
    outcome, its plan is carried out before the outcome is recorded (so before the ack).

    Plans of tasks that finish while a flush is on its way are flushed together (group commit): one
    round trip, and one ``chord_part.lua`` call per chord for all of its members in the batch.
    """

    def __init__(self, app: Celeriac, url: str, prefix: str) -> None:
        self.app = app
        self.store = RedisWorkflowStore(app, url, prefix)
        self._pending: list[tuple[Plan, asyncio.Future[None]]] = []
        self._flushing = False
        self._drainer: asyncio.Task[None] | None = None  # referenced: a running task is not collected

    async def before_run(self, job: Any) -> Any:
        from .workflow import with_values, workflow_of

        w = workflow_of(job.message)
        if w is None or not isinstance(w.get("r"), str):
            return job
        values = await self.store.chord_values(job.request.queue, w["r"])
        return with_values(job, values)

    async def after(self, message: Any, queue: str, outcome: Any) -> None:
        from .workflow import after_outcome

        plan = after_outcome(self.app, message, queue, outcome)
        if not plan:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((plan, future))
        if not self._flushing:  # the first plan starts a flush at once; later ones join the next
            self._flushing = True
            self._drainer = loop.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._flush(batch)
        finally:
            self._flushing = False

    async def _flush(self, batch: list[tuple[Plan, asyncio.Future[None]]]) -> None:
        from .workflow import Plan

        merged = Plan()
        for plan, _ in batch:
            merged.extend(plan)
        try:
            await self.store.apply(merged)
        except Exception as exc:  # each waiter decides (the worker hands its delivery back)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def dead_lettered(self, queue: str, count: int) -> None:
        """``count`` messages of ``queue`` were just dead-lettered by a reclaim (delivered
        ``max_deliveries`` times without an outcome): the workflow members among the newest dead
        letters fail what depends on them (idempotent: a dead letter seen twice changes nothing)."""
        from .exceptions import DecodeError, WorkerLostError
        from .workflow import Plan, failure_plan

        key = f"{self.store.prefix}:{{{queue}}}:dead"
        with translate_errors(self.store.url):
            entries: Any = await self.store._client().xrevrange(key, count=count)
        plan = Plan()
        lost = f"{WorkerLostError.__module__}.{WorkerLostError.__qualname__}"
        for _entry_id, fields in entries or ():
            try:
                message = self.app.codec.decode(bytes(fields.get(b"m", b"")))
            except DecodeError:
                continue
            reason = to_str(fields.get(b"reason", b"dead-lettered"))
            plan.extend(failure_plan(self.app, message, queue, TaskState.FAILURE, lost, reason))
        await self.store.apply(plan)

    async def close(self) -> None:
        await self.store.close()
