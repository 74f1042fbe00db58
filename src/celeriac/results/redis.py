"""Results in Redis: one single-element list per task, with a TTL.

Why a list: a caller waits with ``BLMOVE key key RIGHT LEFT`` (a rotation of the one element back onto
the same key), which blocks server-side until the worker pushes the record and then returns it without
consuming it. Every waiter wakes, the TTL stays, and nobody polls. The worker writes
with ``store_result.lua`` (push, trim to one, expire: atomic, so no waiter ever sees a record without its
TTL) once it checked that it still owns the delivery; when results live on the broker's Redis,
``settle.lua`` does the same push, trim and expire itself, for owned deliveries only, with the acks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, cast

import redis
import redis.asyncio

from .._redis.client import (
    aclose_client,
    async_client,
    close_client,
    open_connections,
    remember_transport_options,
    sync_client,
    translate_errors,
)
from .._redis.keys import KeySchema
from .._redis.scripts import MARK_REVOKED, STORE_PROGRESS, STORE_RESULT, Batch
from .._topology import connection_options
from ..record import ResultWrite
from .base import ResultBackend

# a BLMOVE waits at most this long per call so that the socket timeout can catch a dead server
_WAIT_CHUNK_S = 30.0
# get(on_message=...) checks for the final record at least this often (progress itself is pushed)
_PROGRESS_POLL_S = 0.2
# REVOKED marks per pipeline
_MARK_CHUNK = 2000
#: connections the async waiters of one event loop may hold at once (more waiters queue for one)
_ASYNC_WAITERS_MAX = 64


class _LoopWaiters:
    """The async client the ``wait_async`` calls of one event loop share, while any runs."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self.active = 0


class RedisResultBackend(ResultBackend):
    """Results stored in Redis under ``<prefix>:result:<task id>``."""

    def __init__(
        self, url: str, *, prefix: str = "celeriac", transport_options: Mapping[str, Any] | None = None
    ) -> None:
        self.url = url
        self.transport_options = connection_options(transport_options)
        remember_transport_options(url, self.transport_options)
        self.keys = KeySchema(prefix)
        self._sync: redis.Redis | None = None
        self._waiter: redis.Redis | None = None
        self._aio: redis.asyncio.Redis | None = None
        # async clients are bound to their loop: one per loop, removed and closed when the loop's
        # last waiter returns (so a plain dict holds no loop longer than its waits)
        self._loop_waiters: dict[asyncio.AbstractEventLoop, _LoopWaiters] = {}

    @property
    def sync(self) -> redis.Redis:
        if self._sync is None:
            self._sync = sync_client(self.url, transport_options=self.transport_options)
        return self._sync

    def get(self, task_id: str) -> bytes | None:
        with translate_errors(self.url):
            items = self.sync.lrange(self.keys.result(task_id), 0, 0)
        return items[0] if items else None  # type: ignore[return-value]

    def wait(self, task_id: str, timeout_s: float | None) -> bytes | None:
        if self._waiter is None:
            self._waiter = sync_client(
                self.url, socket_timeout_s=_WAIT_CHUNK_S + 5.0, transport_options=self.transport_options
            )
        key = self.keys.result(task_id)
        remaining = timeout_s
        with translate_errors(self.url):
            while True:
                chunk = _WAIT_CHUNK_S if remaining is None else min(remaining, _WAIT_CHUNK_S)
                # BLMOVE's timeout is in seconds with sub-second precision; 0 would mean "forever"
                value: Any = self._waiter.blmove(key, key, max(chunk, 0.001), "RIGHT", "LEFT")  # type: ignore[arg-type]
                if value is not None:
                    return bytes(value)
                if remaining is not None:
                    remaining -= chunk
                    if remaining <= 0:
                        return None

    async def wait_async(self, task_id: str, timeout_s: float | None) -> bytes | None:
        """``BLMOVE`` on an asyncio client: the loop runs other work while this waits.

        Why the client closes when the loop's last waiter returns: nobody else knows when the
        caller's loop ends (a web app's, a test's), and an async client must not outlive its loop."""
        loop = asyncio.get_running_loop()
        waiters = self._loop_waiters.get(loop)
        if waiters is None:
            client = async_client(
                self.url, max_connections=_ASYNC_WAITERS_MAX, socket_timeout_s=_WAIT_CHUNK_S + 5.0
            )
            waiters = self._loop_waiters[loop] = _LoopWaiters(client)
        waiters.active += 1
        key = self.keys.result(task_id)
        remaining = timeout_s
        try:
            with translate_errors(self.url):
                while True:
                    chunk = _WAIT_CHUNK_S if remaining is None else min(remaining, _WAIT_CHUNK_S)
                    value: Any = await waiters.client.blmove(key, key, max(chunk, 0.001), "RIGHT", "LEFT")  # type: ignore[arg-type]
                    if value is not None:
                        return bytes(value)
                    if remaining is not None:
                        remaining -= chunk
                        if remaining <= 0:
                            return None
        finally:
            waiters.active -= 1
            if waiters.active == 0:
                if self._loop_waiters.get(loop) is waiters:
                    del self._loop_waiters[loop]
                await asyncio.shield(waiters.client.aclose())

    def forget(self, task_id: str) -> None:
        with translate_errors(self.url):
            self.sync.delete(self.keys.result(task_id))

    def store(self, items: Sequence[ResultWrite]) -> None:
        with translate_errors(self.url):
            pipe = self.sync.pipeline(transaction=False)
            batch = Batch()
            for item in items:
                batch.add(pipe, STORE_RESULT, [self.keys.result(item.task_id)], _store_args(item))
            batch.repair(self.sync, pipe.execute(raise_on_error=False))

    async def store_async(self, items: Sequence[ResultWrite]) -> None:
        if self._aio is None:
            self._aio = async_client(self.url, max_connections=2, transport_options=self.transport_options)
        with translate_errors(self.url):
            pipe = self._aio.pipeline(transaction=False)
            batch = Batch()
            for item in items:
                batch.add(pipe, STORE_RESULT, [self.keys.result(item.task_id)], _store_args(item))
            await batch.arepair(self._aio, await pipe.execute(raise_on_error=False))

    def connections(self) -> int:
        """Redis connections this store holds now (worker heartbeat field ``connections``)."""
        return sum(open_connections(c) for c in (self._sync, self._waiter, self._aio))

    # ---- task control -----------------------------------------------------------------------------
    def mark_revoked(self, items: Sequence[tuple[str, bytes]], ttl_s: float) -> None:
        """One ``mark_revoked.lua`` call per id (one key each: a result key's slot is its own), sent
        back to back on one connection and read afterwards, in chunks: a redis-py pipeline packs and
        parses about 5x slower, which a revoke of a 200k-member group would feel (12 s vs ~2 s)."""
        ttl_ms = max(1, int(ttl_s * 1000))
        if not hasattr(self.sync, "connection_pool"):  # a Redis Cluster: pipelines per node, by key
            with translate_errors(self.url):
                for start in range(0, len(items), _MARK_CHUNK):
                    pipe: Any = self.sync.pipeline(transaction=False)
                    batch = Batch()
                    for task_id, payload in items[start : start + _MARK_CHUNK]:
                        batch.add(pipe, MARK_REVOKED, [self.keys.result(task_id)], [payload, ttl_ms])
                    batch.repair(self.sync, pipe.execute(raise_on_error=False))
            return
        with translate_errors(self.url):
            conn: Any = self.sync.connection_pool.get_connection()
            try:
                for start in range(0, len(items), _MARK_CHUNK):
                    chunk = items[start : start + _MARK_CHUNK]
                    commands = [
                        ("EVALSHA", MARK_REVOKED.sha, 1, self.keys.result(task_id), payload, ttl_ms)
                        for task_id, payload in chunk
                    ]
                    conn.send_packed_command(conn.pack_commands(commands))
                    missing = False
                    for _ in chunk:
                        try:
                            conn.read_response()
                        except redis.exceptions.NoScriptError:
                            missing = True
                    if missing:  # an empty script cache (restart, failover): load, send the chunk again
                        MARK_REVOKED(self.sync, [self.keys.result(chunk[0][0])], [chunk[0][1], ttl_ms])
                        conn.send_packed_command(conn.pack_commands(commands))
                        for _ in chunk:
                            conn.read_response()
            except BaseException:
                conn.disconnect()
                raise
            finally:
                self.sync.connection_pool.release(conn)

    def store_progress(self, task_id: str, payload: bytes, ttl_s: float) -> bool:
        keys = [self.keys.result(task_id), self.keys.progress(task_id)]
        with translate_errors(self.url):
            return bool(STORE_PROGRESS(self.sync, keys, [payload, max(1, int(ttl_s * 1000))]))

    def get_with_progress(self, task_id: str) -> tuple[bytes | None, bytes | None]:
        with translate_errors(self.url):
            pipe = self.sync.pipeline(transaction=False)
            pipe.lrange(self.keys.result(task_id), 0, 0)
            pipe.get(self.keys.progress(task_id))
            final, progress = pipe.execute()
        return (final[0] if final else None), progress

    def wait_progress(
        self, task_id: str, timeout_s: float | None, on_progress: Callable[[bytes], None]
    ) -> bytes | None:
        """Progress records are pushed (pub/sub on the progress key's name); the final record is
        checked after each one and every ``_PROGRESS_POLL_S`` (a final write announces nothing)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with translate_errors(self.url):
            # typed only from redis-py 8 on: through Any it checks against every supported version
            pubsub = cast(Any, self.sync).pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.keys.progress(task_id))  # before the first read: nothing is missed
                final, progress = self.get_with_progress(task_id)
                last = None
                while True:
                    if final is not None:
                        return final
                    if progress is not None and progress != last:
                        last = progress
                        on_progress(progress)
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    wait_s = _PROGRESS_POLL_S if remaining is None else min(remaining, _PROGRESS_POLL_S)
                    message = pubsub.get_message(timeout=wait_s)
                    final = self.get(task_id)
                    progress = message["data"] if message and message.get("type") == "message" else None
            finally:
                pubsub.close()

    def location(self) -> Hashable | None:
        return ("redis", self.url, self.keys.prefix, repr(sorted(self.transport_options.items())))

    def close_sync(self) -> None:
        for client in (self._sync, self._waiter):
            if client is not None:
                close_client(client)
        self._sync = self._waiter = None

    async def close(self) -> None:
        if self._aio is not None:
            await aclose_client(self._aio)
            self._aio = None


def _store_args(item: ResultWrite) -> list[Any]:
    return [item.payload, max(1, int(item.ttl_s * 1000))]
