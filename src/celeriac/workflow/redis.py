"""Workflow plans carried out in Redis (see :mod:`celeriac.workflow` for what a plan is).

Every script touches the keys of one queue, all under the queue's hash tag, so each is atomic on
Redis Cluster too: ``dispatch.lua`` (successors into a queue, each once), ``chord_init.lua`` and
``chord_part.lua`` (a chord's hash lives in its body queue's slot, so the last count and the body's
XADD are one script). A plan is one pipelined round trip. A chord that failed is reported back to
the caller, whose follow-up (``outcome.chord_failed``) is one more plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio

from .._redis import scripts
from .._redis.client import async_client, sync_client, to_str, translate_errors
from .._redis.scripts import Batch
from ..broker.base import Enqueue
from ..exceptions import ChordError
from .plan import Plan

if TYPE_CHECKING:
    from ..app import Celeriac

#: a chord that failed, as ``chord_part.lua`` reports it: (queue, chord id, body message, failure)
Failed = tuple[str, str, bytes, bytes]

# messages or parts per script call (a few thousand arguments: Redis is never blocked long)
_CHUNK = 1000
# a chord's state lives at least this long (seconds), refreshed by every member that finishes
_MIN_CHORD_TTL_S = 3600.0


class RedisWorkflowStore:
    """Applies plans on the broker's Redis. One per app (producer side) and one per worker."""

    def __init__(self, app: Celeriac, url: str, prefix: str, aio: redis.asyncio.Redis | None = None) -> None:
        self.app = app
        self.url = url
        self.prefix = prefix
        self._sync: redis.Redis | None = None
        #: a worker's store uses its broker's asyncio client (``aio``: shared, not closed here)
        self._aio: redis.asyncio.Redis | None = aio
        self._shared_aio = aio
        #: script calls made (benchmarks count Redis commands per chord member)
        self.calls = 0

    # ---- keys -------------------------------------------------------------------------------------
    def chord_key(self, queue: str, chord_id: str) -> str:
        return f"{self.prefix}:{{{queue}}}:chord:{chord_id}"

    def _chord_keys(self, chords: list[tuple[str, str]]) -> list[str]:
        """Every key of these chords: the hash, the values, the members counted."""
        keys = [self.chord_key(q, c) for q, c in chords]
        return [k for key in keys for k in (key, f"{key}:v", f"{key}:bits")]

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
                        [
                            self.chord_key(queue, chord_id),
                            self._queue(queue)[0],
                            f"{self.chord_key(queue, chord_id)}:v",
                            f"{self.chord_key(queue, chord_id)}:bits",
                        ],
                        [ttl, *args[start : start + 3 * _CHUNK]],
                    )
                )
                names.append((queue, chord_id))
        return calls, names

    @staticmethod
    def _failed(names: list[tuple[str, str]], replies: Sequence[Any]) -> list[Failed]:
        return [
            (queue, chord_id, bytes(reply[1]), bytes(reply[2]))
            for (queue, chord_id), reply in zip(names, replies)
            if reply and to_str(reply[0]) == "failed"
        ]

    # ---- synchronous (clients, admin, tasks replacing themselves) ---------------------------------
    @property
    def sync(self) -> redis.Redis:
        if self._sync is None:
            self._sync = sync_client(self.url)
        return self._sync

    def apply_sync(self, plan: Plan, *, dedup: bool) -> list[Failed]:
        """Carry out ``plan``. ``dedup``: skip what was dispatched before (a worker's successors);
        a client's first send has nothing to skip and takes the bulk path."""
        if not plan:
            return []
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
                self.sync.delete(*self._chord_keys(plan.forget))
        return self._failed(names, replies)

    def _run_sync(self, calls: list[tuple[Any, list[Any], list[Any]]]) -> list[Any]:
        pipe = self.sync.pipeline(transaction=False)
        batch = Batch()
        for script, keys, args in calls:
            batch.add(pipe, script, keys, args)
        self.calls += len(calls)
        return batch.repair(self.sync, pipe.execute(raise_on_error=False))

    def chord_blob_sync(self, queue: str, chord_id: str) -> tuple[int, bytes]:
        key = self.chord_key(queue, chord_id)
        with translate_errors(self.url):
            pipe = self.sync.pipeline(transaction=False)
            pipe.hget(key, "n")
            pipe.zrange(f"{key}:v", 0, -1)
            size, blob = pipe.execute()
        return self._checked(chord_id, size, blob)

    # ---- asyncio (the worker) ------------------------------------------------------------------------
    def _client(self) -> redis.asyncio.Redis:
        if self._aio is None:
            self._aio = async_client(self.url, max_connections=2)
        return self._aio

    async def apply(self, plan: Plan) -> list[Failed]:
        """Carry out a worker's plan (successors deduplicated) in one round trip; returns the chords
        that failed (their follow-up is the caller's)."""
        if not plan:
            return []
        backend = self.app.backend
        if plan.stores and backend is not None:
            await backend.store_async(plan.stores)
        calls, names = self._calls(plan, True)
        client = self._client()
        with translate_errors(self.url):
            if len(calls) == 1 and not plan.forget:  # a chain's next step: one call, no pipeline
                script, keys, args = calls[0]
                self.calls += 1
                return self._failed(names, [await script.run(client, keys, args)])
            pipe = client.pipeline(transaction=False)
            batch = Batch()
            for script, keys, args in calls:
                batch.add(pipe, script, keys, args)
            if plan.forget:  # last: the script calls keep their places for NOSCRIPT repairs
                pipe.delete(*self._chord_keys(plan.forget))
            self.calls += len(calls) + (1 if plan.forget else 0)
            replies = await batch.arepair(client, await pipe.execute(raise_on_error=False))
        return self._failed(names, replies[len(calls) - len(names) : len(calls)])

    async def chord_blob(self, queue: str, chord_id: str) -> tuple[int, bytes]:
        """``(size, the members' index-value pairs in member order)`` of a chord whose body starts."""
        key = self.chord_key(queue, chord_id)
        with translate_errors(self.url):
            pipe = self._client().pipeline(transaction=False)
            pipe.hget(key, "n")
            pipe.zrange(f"{key}:v", 0, -1)
            size, blob = await pipe.execute()
        return self._checked(chord_id, size, blob)

    async def dead_letters(self, queue: str, count: int) -> list[tuple[bytes, str]]:
        """The newest ``count`` dead letters of ``queue``: (message, reason)."""
        key = f"{self.prefix}:{{{queue}}}:dead"
        with translate_errors(self.url):
            entries: Any = await self._client().xrevrange(key, count=count)
        return [
            (bytes(fields.get(b"m", b"")), to_str(fields.get(b"reason", b"dead-lettered")))
            for _id, fields in entries or ()
        ]

    @staticmethod
    def _checked(chord_id: str, size: Any, blob: Any) -> tuple[int, bytes]:
        if size is None:
            raise ChordError(
                f"the state of chord {chord_id} is gone (it expired: a chord's state lives "
                f"max(result_expires, {_MIN_CHORD_TTL_S:.0f} s) after its last member finished)"
            )
        return int(size), b"".join(blob or ())

    async def close(self) -> None:
        if self._aio is not None and self._aio is not self._shared_aio:
            await self._aio.aclose()
            self._aio = None

    def close_sync(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
