"""RedisBroker: queues as Redis streams with one consumer group, leases as pending-entry idle time.

Why streams: ``XREADGROUP`` takes a message and records its owner in one atomic step (the pending
entries list, PEL), it blocks without polling, and the PEL keeps a delivery count per message. A
lease is the entry's idle time: the worker renews it (``extend.lua``) while the task runs; a worker
that died stops renewing, and after ``lease_ms`` any worker takes the entry over (``reclaim.lua``).
Acks delete the entry (``XACK`` + ``XDEL``), so a queue holds only waiting and running messages:
a few dozen bytes of Redis memory per small queued task (figures: docs/design.md).

Why this module is long: it owns every Redis semantic of the queue (the producer's send path, the
lease protocol and the admin reads) in one module on purpose, so that one file answers "what does
celeriac do in Redis"; the scripts, key schema and clients live in :mod:`celeriac._redis`.

Delayed messages wait in a sorted set scored by due time and are moved to the stream by
``promote.lua``. Every multi-key operation is a Lua script over the keys of one queue, all sharing the
queue's hash tag (see :mod:`celeriac._redis.keys`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import redis

from .._redis import scripts
from .._redis.client import async_client, sync_client, to_str, translate_error, translate_errors
from .._redis.keys import GROUP, KeySchema, QueueKeys, level_queue, split_level
from .._redis.scripts import Batch
from ..exceptions import BrokerError
from .base import (
    KNOWN_QUEUES_TTL_S,
    PROMOTE_BATCH,
    WORKERS_REGISTRY_TTL_S,
    Broker,
    DeadLetter,
    Delivery,
    Enqueue,
    QueueStats,
    Settlement,
    WorkerInfo,
    group_by_queue,
    max_deliveries_reason,
    task_id_of,
)
from .revoked import Revocation, RevokedMirror, entry_time_ms

if TYPE_CHECKING:
    import redis.asyncio

    from ..record import ResultWrite

# messages per enqueue_many script call: big enough to amortise the call, small enough that one
# call keeps Redis busy for about a millisecond only
_BULK_CHUNK = 1000

# entries deleted per purge_ready.lua call: about 3 ms of Redis time each (10,000 took about 30 ms,
# during which every worker and producer waits)
_PURGE_BATCH = 1000

# the longest a blocking read waits server-side, and how much longer its socket may stay silent
# before the read fails (a dead or partitioned peer): see open()
_MAX_BLOCK_MS = 10_000
_BLOCK_TIMEOUT_MARGIN_S = 5.0

MIN_REDIS_VERSION = (6, 2, 0)  # XPENDING IDLE, ZRANGE BYSCORE, LMOVE

# revocation entries read per XREAD (a worker that has more to catch up reads again at once)
_REVOKED_CHUNK = 1000


def _parse_entries(queue: str, entries: Any) -> list[Delivery]:
    """Deliveries from raw stream entries ``[id, [field, value, ...]]`` (see ``_raw_reply``)."""
    out = []
    for entry_id, fields in entries:
        if not fields:  # the entry was deleted (purged) after delivery: nothing to run
            continue
        if isinstance(fields, dict):  # a parsed reply (RESP3 map): not expected, but harmless
            fields = [x for pair in fields.items() for x in pair]
        data = b""
        if fields[0] == b"m":
            data = fields[1]
        else:
            for i in range(2, len(fields) - 1, 2):
                if fields[i] == b"m":
                    data = fields[i + 1]
                    break
        out.append(
            Delivery(queue, entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id), data, 1)
        )
    return out


def _parse_dead_letters(entries: Any) -> list[DeadLetter]:
    """Dead letters from ``XRANGE`` entries ``(id, {field: value})``.

    The dead-letter stream holds whatever reached Redis, and anyone who can write to Redis can add to
    it: a time that does not parse is shown as 0 and a reason that is not UTF-8 with replacement
    characters (``to_str``), rather than raised on, because listing and replaying are how an operator
    cleans up.
    """
    out = []
    for entry_id, fields in entries or []:
        data = fields.get(b"m", b"")
        time_raw = fields.get(b"time", b"0")
        out.append(
            DeadLetter(
                entry_id=to_str(entry_id),
                task_id=task_id_of(data),
                data=data,
                reason=to_str(fields.get(b"reason", b"")),
                time_ms=int(time_raw) if time_raw.isdigit() and len(time_raw) < 20 else 0,
            )
        )
    return out


def _raw_reply(response: Any, **_options: Any) -> Any:
    """Response callback for XREADGROUP: the reply as Redis sent it. redis-py's own turns every entry's
    fields into a dict, which costs more per message than running a small task."""
    return response


class RedisBroker(Broker):
    """A broker on one Redis server.

    Args:
        url: ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL.
        prefix: key prefix (several apps can share one Redis).
        dead_letter_max: cap on each queue's dead-letter stream.
        max_connections: the worker's command pool size (the blocking read and pub/sub use one more each).
        sync_max_connections: the producer and admin pool's bound (``broker_pool_limit``; None: unbounded).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "celeriac",
        dead_letter_max: int = 10_000,
        max_connections: int = 4,
        sync_max_connections: int | None = 8,
        revoke_expires_s: float = 86_400.0,
        revoked_max: int = 100_000,
    ) -> None:
        self.url = url
        #: bound of the producer/admin connection pool (Celery's broker_pool_limit; None: unbounded)
        self.sync_max_connections = sync_max_connections
        self.keys = KeySchema(prefix)
        self.dead_letter_max = dead_letter_max
        self.max_connections = max_connections
        self._sync: redis.Redis | None = None
        self._client: redis.asyncio.Redis | None = None
        self._blocking: redis.asyncio.Redis | None = None
        self._pubsub: Any = None
        # how much of a consumer's pending list the ownership checks read (settle, extend, release):
        # more than it can own at once, or deliveries past the first N would look lost
        self._pel_scan = 1000
        self._own = threading.local()  # this thread's own connection for single sends (see _send)
        self.revoke_expires_s = revoke_expires_s
        self.revoked_max = revoked_max
        self._revocations = RevokedMirror(int(revoke_expires_s * 1000), revoked_max)
        # priority levels (1..9) in use per consumed queue, learned at open, from promote.lua's reply
        # and from 'levels' wake-ups; a queue absent here is read exactly as if priorities did not exist
        self._levels: dict[str, tuple[int, ...]] = {}
        self._learned: list[Revocation] = []  # revocations applied by the last read (see sync_revoked)
        self._control: redis.asyncio.Redis | None = None  # the control loop's blocking connection
        self._blocking_id: int | None = None  # CLIENT ID of the fetch's blocking connection

    # ---- clients ---------------------------------------------------------------------------------
    @property
    def sync(self) -> redis.Redis:
        """The synchronous client (created on first use)."""
        if self._sync is None:
            self._sync = sync_client(self.url, max_connections=self.sync_max_connections)
        return self._sync

    @property
    def _aio(self) -> redis.asyncio.Redis:
        if self._client is None:
            raise BrokerError("consumer side not opened: call `await broker.open(queues)` first")
        return self._client

    # ---- producer --------------------------------------------------------------------------------
    def enqueue(self, item: Enqueue) -> None:
        q = self.keys.queue(item.queue)
        if item.delay_ms is None and item.eta_ms is None:
            # the whole send path ends here: one XADD, one round trip
            self._send("XADD", q.ready, "*", "m", item.data)
            return
        with translate_errors(self.url):
            scripts.ENQUEUE_DELAYED(self.sync, [q.delayed], [q.wake, *_delay_args(item)])

    def _send(self, *args: Any) -> Any:
        """One command on this thread's own connection.

        Why not ``self.sync.execute_command``: redis-py's pooled path (pool checkout and return, retry
        wrapper, metrics hooks) costs about as much as the loopback round trip itself. A connection per
        thread needs no lock; a forked child makes its own. On a connection error the command goes
        through the pooled client once, which reconnects and retries by its policy (a resend, as
        redis-py's own retry does: a send stays at-least-once).
        """
        conn = self._own_connection()
        try:
            try:
                conn.send_command(*args)
                return conn.read_response()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                conn.disconnect()
                return self.sync.execute_command(*args)  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError) as exc:
            raise translate_error(exc, self.url) from None

    def enqueue_many(self, items: Sequence[Enqueue]) -> None:
        if not items:
            return
        ready: dict[str, list[bytes]] = {}
        delayed: dict[str, list[Any]] = {}
        for item in items:
            if item.delay_ms is None and item.eta_ms is None:
                ready.setdefault(item.queue, []).append(item.data)
            else:
                delayed.setdefault(item.queue, []).extend(_delay_args(item))
        if ready:
            calls: list[tuple[scripts.Script, list[Any], Sequence[Any]]] = []
            for name, messages in ready.items():
                q = self.keys.queue(name)
                for start in range(0, len(messages), _BULK_CHUNK):
                    calls.append((scripts.ENQUEUE_MANY, [q.ready], messages[start : start + _BULK_CHUNK]))
            self._stream_scripts(calls)
        if delayed:
            with translate_errors(self.url):
                pipe = self.sync.pipeline(transaction=False)
                batch = Batch()
                for name, args in delayed.items():
                    q = self.keys.queue(name)
                    for start in range(0, len(args), 3 * _BULK_CHUNK):
                        batch.add(
                            pipe,
                            scripts.ENQUEUE_DELAYED,
                            [q.delayed],
                            [q.wake, *args[start : start + 3 * _BULK_CHUNK]],
                        )
                batch.repair(self.sync, pipe.execute(raise_on_error=False))

    def _stream_scripts(self, calls: Sequence[tuple[scripts.Script, list[Any], Sequence[Any]]]) -> None:
        """Send script calls one after the other on this thread's connection, then read the replies.

        Unlike a redis-py pipeline, which packs every command before sending any, Redis runs the first
        chunk while the next one is being packed, so a bulk send costs about max(client, server) time
        instead of their sum. A chunk that meets an empty script cache (NOSCRIPT) is sent again once the
        script is loaded; a connection error raises (chunks sent before it are queued).
        """
        conn = self._own_connection()
        try:
            try:
                for script, keys, args in calls:
                    conn.send_packed_command(
                        conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args), check_health=False
                    )
                failed: list[tuple[scripts.Script, list[Any], Sequence[Any]]] = []
                error: redis.ResponseError | None = None
                for call in calls:
                    try:
                        conn.read_response()
                    except redis.exceptions.NoScriptError:
                        failed.append(call)
                    except (
                        redis.ResponseError
                    ) as exc:  # read every reply before raising: the stream stays in step
                        error = error or exc
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                conn.disconnect()
                raise
            if error is not None:
                raise error
            for script, keys, args in failed:
                script(self.sync, keys, args)
        except (redis.RedisError, OSError) as exc:
            raise translate_error(exc, self.url) from None

    def _own_connection(self) -> Any:
        """This thread's own connection (made on first use; a forked child makes its own)."""
        own = self._own
        conn = getattr(own, "conn", None)
        pid = os.getpid()
        if conn is None or own.pid != pid:
            conn = own.conn = self.sync.connection_pool.make_connection()
            own.pid = pid
        return conn

    # ---- consumer --------------------------------------------------------------------------------
    def for_worker(self, *, max_owned: int = 0) -> RedisBroker:
        broker = RedisBroker(
            self.url,
            prefix=self.keys.prefix,
            dead_letter_max=self.dead_letter_max,
            max_connections=self.max_connections,
            revoke_expires_s=self.revoke_expires_s,
            revoked_max=self.revoked_max,
        )
        broker._pel_scan = max(1000, 2 * max_owned)
        return broker

    async def open(self, queues: Sequence[str]) -> None:
        if self._client is None:
            self._client = async_client(self.url, max_connections=self.max_connections)
            # one connection that may sit in a blocking XREADGROUP. Its socket timeout exceeds the
            # longest BLOCK (reads are capped at _MAX_BLOCK_MS) so that a silent peer (a network
            # partition: no reset, no reply) fails the read instead of hanging the fetch loop forever
            self._blocking = async_client(
                self.url, max_connections=1, socket_timeout_s=_MAX_BLOCK_MS / 1000 + _BLOCK_TIMEOUT_MARGIN_S
            )
            for client in (self._client, self._blocking):
                client.set_response_callback("XREADGROUP", _raw_reply)
        for name in queues:
            await self._ensure_group(self.keys.queue(name))
        with translate_errors(self.url):
            for name in queues:
                self._set_levels(name, await self._aio.smembers(self.keys.levels(name)))
        try:  # to end a blocked read when a queue gets its first priority level (see promote)
            assert self._blocking is not None
            self._blocking_id = int(await self._blocking.client_id())
        except (redis.RedisError, OSError):
            self._blocking_id = None  # an ACL without CLIENT ID: a new level is seen at the next read
        while len(await self.sync_revoked()) >= _REVOKED_CHUNK:
            pass  # load every revocation still in force before the first task starts
        channels = [self.keys.queue(name).wake for name in queues]
        if channels:
            with translate_errors(self.url):
                self._pubsub = self._aio.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(*channels)

    async def _ensure_group(self, q: QueueKeys) -> None:
        with translate_errors(self.url):
            try:
                # read-only check first: creating a group is refused when Redis is full, reading is not
                if any(to_str(g.get("name", "")) == GROUP for g in await self._aio.xinfo_groups(q.ready)):
                    return
            except redis.ResponseError:  # no such key yet
                pass
            try:
                await self._aio.xgroup_create(q.ready, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def close(self) -> None:
        for closer in (self._pubsub, self._client, self._blocking, self._control):
            if closer is not None:
                try:
                    await closer.aclose()
                except (redis.RedisError, OSError, RuntimeError):  # closing a dead connection
                    pass
        self._pubsub = self._client = self._blocking = self._control = None

    async def fetch(self, queues: Sequence[str], consumer: str, count: int, block_ms: int) -> list[Delivery]:
        try:
            return await self._fetch(queues, consumer, count, block_ms)
        except BrokerError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # the stream was deleted (FLUSHDB, restart without persistence): recreate and go on
            for name in queues:
                await self._ensure_group(self.keys.queue(name))
            return []

    async def _fetch(self, queues: Sequence[str], consumer: str, count: int, block_ms: int) -> list[Delivery]:
        if self._levels and any(name in self._levels for name in queues):
            return await self._fetch_levels(queues, consumer, count, block_ms)
        out: list[Delivery] = []
        with translate_errors(self.url):
            if len(queues) == 1:
                return await self._read(queues, consumer, count, block_ms)
            # several queues: take them in priority order without blocking, then block on all
            for name in queues:
                out += await self._read([name], consumer, count - len(out), None)
                if len(out) >= count:
                    return out
            if out or not block_ms:
                return out
            return await self._read(queues, consumer, 1, block_ms)

    async def _read(
        self, queues: Sequence[str], consumer: str, count: int, block_ms: int | None
    ) -> list[Delivery]:
        args: list[Any] = ["XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count]
        client = self._aio
        if block_ms:
            args += ["BLOCK", min(block_ms, _MAX_BLOCK_MS)]  # an early empty reply is allowed
            assert self._blocking is not None
            client = self._blocking
        streams = [self.keys.queue(name).ready for name in queues]
        args += ["STREAMS", *streams, *([">"] * len(streams))]
        # The revocations are read in the same round trip, right after the fetch (Redis runs one
        # connection's commands in order, even after a blocking read): a revoke that reached Redis
        # before this fetch took a message is known before that message's task can start.
        sync = ["XREAD", "COUNT", _REVOKED_CHUNK, "STREAMS", self.keys.revoked, self._revocations.last_id]
        reply, revoked = await _two_commands(client, args, sync)
        if revoked and self._apply_revoked(revoked) >= _REVOKED_CHUNK:
            while len(await self.sync_revoked()) >= _REVOKED_CHUNK:
                pass
        if not reply:
            return []
        by_stream = {to_str(stream): entries for stream, entries in _stream_pairs(reply)}
        out: list[Delivery] = []
        for name, stream in zip(queues, streams):
            out += _parse_entries(name, by_stream.get(stream, []))
        return out

    async def _fetch_levels(
        self, queues: Sequence[str], consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """Fetch from queues some of which have priority levels: each queue's levels highest first
        (``fetch_levels.lua``, one call per such queue), queues in the order given; when all are empty,
        block on every stream at once. The revocations are read after the fetch (see ``_read``)."""
        out: list[Delivery] = []
        with translate_errors(self.url):
            for name in queues:
                names = self._level_names(name)
                if len(names) == 1:
                    out += await self._read(names, consumer, count - len(out), None)
                else:
                    reply = await scripts.FETCH_LEVELS.run(
                        self._aio,
                        [self.keys.queue(n).ready for n in names],
                        [GROUP, consumer, count - len(out)],
                    )
                    for i in range(0, len(reply), 2):
                        out += _parse_entries(names[int(reply[i]) - 1], reply[i + 1])
                if len(out) >= count:
                    break
            if not out and block_ms:
                every = [n for name in queues for n in self._level_names(name)]
                return await self._read(every, consumer, 1, block_ms)
            if out:
                while len(await self.sync_revoked()) >= _REVOKED_CHUNK:
                    pass
        return out

    def _level_names(self, queue: str) -> list[str]:
        """The (level) queue names of ``queue`` in priority order: the queue itself, then its levels."""
        return [queue, *(level_queue(queue, level) for level in self._levels.get(queue, ()))]

    def _set_levels(self, queue: str, members: Any) -> bool:
        """Record the levels of ``queue``; True when a level is new."""
        levels = tuple(sorted(int(m) for m in members or () if 0 < int(m) <= 9))
        new = bool(set(levels) - set(self._levels.get(queue, ())))
        if levels:
            self._levels[queue] = levels
        else:
            self._levels.pop(queue, None)
        return new

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
        base = split_level(item.queue)[0]
        q = self.keys.queue(level_queue(base, level))
        keys = [q.ready, q.delayed, self.keys.levels(base)]
        if unique_key is not None:
            keys.append(self.keys.unique(base, unique_key))
        delay = _delay_args(item)[:2] if item.delay_ms is not None or item.eta_ms is not None else ["", ""]
        args = [level, GROUP, q.wake, *delay, item.data, task_id, max(1, unique_ttl_ms)]
        with translate_errors(self.url):
            return to_str(scripts.ENQUEUE_ONE(self.sync, keys, args))

    async def release_unique(self, queue: str, unique_key: str, task_id: str) -> None:
        key = self.keys.unique(split_level(queue)[0], unique_key)
        with translate_errors(self.url):
            await scripts.UNIQUE_RELEASE.run(self._aio, [key], [task_id])

    def revoke(
        self, task_ids: Sequence[str], *, terminate: bool, signal: str, ttl_s: float, max_entries: int
    ) -> None:
        ttl_ms = max(1, int(ttl_s * 1000))
        calls = [
            (
                scripts.REVOKE,
                [self.keys.revoked],
                [ttl_ms, max_entries, "1" if terminate else "", signal, *chunk],
            )
            for chunk in (task_ids[i : i + _BULK_CHUNK] for i in range(0, len(task_ids), _BULK_CHUNK))
        ]
        self._stream_scripts(calls)  # chunks of 1,000 ids, sent back to back

    async def sync_revoked(self, block_ms: int = 0) -> list[Revocation]:
        args: list[Any] = ["XREAD", "COUNT", _REVOKED_CHUNK]
        client = self._aio
        if block_ms:
            # the control loop's own connection: the fetch's blocking connection is busy with the fetch
            client = self._control_client()
            args += ["BLOCK", min(block_ms, _MAX_BLOCK_MS)]
        args += ["STREAMS", self.keys.revoked, self._revocations.last_id]
        with translate_errors(self.url):
            reply = await client.execute_command(*args)  # type: ignore[no-untyped-call]
        before = self._revocations.last_id
        self._apply_revoked(reply)
        if before == self._revocations.last_id:
            return []
        return self._learned

    def _control_client(self) -> redis.asyncio.Redis:
        client = self._control
        if client is None:
            client = self._control = async_client(
                self.url, max_connections=1, socket_timeout_s=_MAX_BLOCK_MS / 1000 + _BLOCK_TIMEOUT_MARGIN_S
            )
        return client

    def _apply_revoked(self, reply: Any) -> int:
        """Apply an XREAD reply of the revocation stream; return the number of entries read."""
        self._learned = []
        mirror = self._revocations
        for _stream, entries in _stream_pairs(reply or []):
            for entry_id, fields in entries:
                if isinstance(fields, (list, tuple)):
                    fields = dict(zip(fields[::2], fields[1::2]))
                eid = to_str(entry_id)
                revocation = Revocation(
                    to_str(fields.get(b"i", b"")),
                    entry_time_ms(eid),
                    fields.get(b"t", b"") == b"1",
                    to_str(fields.get(b"s", b"SIGTERM")),
                )
                mirror.last_id = eid
                if revocation.task_id:
                    mirror.add(revocation)
                    self._learned.append(revocation)
        if self._learned:
            mirror.expire(self._learned[-1].time_ms)
        return len(self._learned)

    def results_location(self) -> Hashable | None:
        # settle.lua writes the results of owned deliveries with their acks, to the keys a
        # RedisResultBackend on the same URL and prefix reads. Result keys have no queue hash tag
        # (AsyncResult knows only the task id): fine on one server, but a broker for Redis Cluster
        # must not offer this capability, so that the worker takes the other fenced path
        # (extend.lua checks ownership, then single-key result writes, then settle).
        return ("redis", self.url, self.keys.prefix)

    async def settle(self, consumer: str, settlements: Sequence[Settlement]) -> list[Delivery]:
        return await self.settle_with_results(consumer, settlements, ())

    async def settle_with_results(
        self, consumer: str, settlements: Sequence[Settlement], early: Sequence[ResultWrite]
    ) -> list[Delivery]:
        results = early
        by_queue = group_by_queue(settlements, _settlement_queue)
        fenced: list[Delivery] = []
        with translate_errors(self.url):
            pipe = self._aio.pipeline(transaction=False)
            batch = Batch()
            for r in results:
                batch.add(
                    pipe, scripts.STORE_RESULT, [self.keys.result(r.task_id)], [r.payload, _ttl_ms(r.ttl_s)]
                )
            order = []
            for name, group in by_queue.items():
                q = self.keys.queue(name)
                acks = " ".join(
                    [f"{s.delivery.entry_id} {s.delivery.deliveries}" for s in group if s.kind == "ack"]
                )
                keys = [q.ready, q.delayed, q.dead, q.reclaimed]
                args: list[Any] = [GROUP, consumer, self._pel_scan, self.dead_letter_max, q.wake, acks, 0]
                for s in group:
                    res = s.result
                    if res is not None:  # written by settle.lua only while the delivery is owned
                        keys.append(self.keys.result(res.task_id))
                        args += [s.delivery.entry_id, s.delivery.deliveries, _ttl_ms(res.ttl_s), res.payload]
                args[6] = len(keys) - 4
                for s in group:
                    d = s.delivery
                    if s.unique is not None and s.kind != "retry":
                        keys.append(self.keys.unique(split_level(name)[0], s.unique))
                        args += ["u", d.entry_id, d.deliveries, s.task_id, len(keys)]
                    if s.kind == "ack":
                        continue
                    if s.kind == "retry":
                        args += ["r", d.entry_id, d.deliveries, *_delay_args(s)]
                    else:
                        args += ["d", d.entry_id, d.deliveries, s.data, s.reason]
                batch.add(pipe, scripts.SETTLE, keys, args)
                order.append(group)
            replies = await batch.arepair(self._aio, await pipe.execute(raise_on_error=False))
        for group, reply in zip(order, replies[len(results) :]):
            lost = {to_str(i) for i in reply}
            fenced += [s.delivery for s in group if s.delivery.entry_id in lost]
        return fenced

    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        by_queue = group_by_queue(deliveries, _delivery_queue)
        lost: list[Delivery] = []
        with translate_errors(self.url):
            for name, group in by_queue.items():
                q = self.keys.queue(name)
                args: list[Any] = [GROUP, consumer, self._pel_scan]
                for d in group:
                    args += [d.entry_id, d.deliveries]
                reply = await scripts.EXTEND.run(self._aio, [q.ready], args)
                gone = {to_str(i) for i in reply}
                lost += [d for d in group if d.entry_id in gone]
        return lost

    async def reclaim(
        self, queue: str, consumer: str, count: int, lease_ms: int, max_deliveries: int
    ) -> tuple[list[Delivery], int]:
        out: list[Delivery] = []
        dead = 0
        for name in self._level_names(queue):
            if len(out) >= count:
                break
            got, n = await self._reclaim(name, consumer, count - len(out), lease_ms, max_deliveries)
            out += got
            dead += n
        if out:  # as after a fetch: revocations that reached Redis before the takeover are known
            while len(await self.sync_revoked()) >= _REVOKED_CHUNK:
                pass
        return out, dead

    async def _reclaim(
        self, queue: str, consumer: str, count: int, lease_ms: int, max_deliveries: int
    ) -> tuple[list[Delivery], int]:
        q = self.keys.queue(queue)
        with translate_errors(self.url):
            reply = await scripts.RECLAIM.run(
                self._aio,
                [q.ready, q.dead, q.reclaimed],
                [
                    GROUP,
                    consumer,
                    lease_ms,
                    count,
                    max_deliveries,
                    self.dead_letter_max,
                    max_deliveries_reason(max_deliveries),
                ],
            )
        dead = int(reply[0])
        out = [
            Delivery(queue, to_str(reply[i]), reply[i + 1], int(reply[i + 2]))
            for i in range(1, len(reply), 3)
        ]
        return out, dead

    async def promote(self, queue: str) -> float | None:
        q = self.keys.queue(queue)
        with translate_errors(self.url):
            # the queue's own level also reports which priority levels exist (no extra round trip)
            reply = await scripts.PROMOTE.run(
                self._aio, [q.delayed, q.ready, self.keys.levels(queue)], [PROMOTE_BATCH]
            )
            if self._set_levels(queue, reply[3]) and self._blocking_id is not None:
                # a new level: end the fetch's blocked read (it returns as if it timed out), so that
                # the next read covers the level at once instead of after the block timeout
                try:
                    await self._aio.execute_command("CLIENT", "UNBLOCK", self._blocking_id)  # type: ignore[no-untyped-call]
                except redis.RedisError:
                    self._blocking_id = None
            waits = [_wait_s(reply[1], reply[2])]
            for level in self._levels.get(queue, ()):
                lq = self.keys.queue(level_queue(queue, level))
                _moved, next_due, now_ms = await scripts.PROMOTE.run(
                    self._aio, [lq.delayed, lq.ready], [PROMOTE_BATCH]
                )
                waits.append(_wait_s(next_due, now_ms))
        due = [w for w in waits if w is not None]
        return min(due) if due else None

    async def wait_wake(self, queues: Sequence[str], timeout_s: float) -> None:
        if self._pubsub is None:
            await asyncio.sleep(timeout_s)
            return
        with translate_errors(self.url):
            await self._pubsub.get_message(timeout=timeout_s)

    async def pending(self, queue: str, consumer: str) -> list[Delivery]:
        out: list[Delivery] = []
        for name in self._level_names(queue):
            q = self.keys.queue(name)
            with translate_errors(self.url):
                rows = await self._aio.xpending_range(
                    q.ready, GROUP, "-", "+", self._pel_scan, consumername=consumer
                )
            out += [Delivery(name, to_str(r["message_id"]), b"", int(r["times_delivered"])) for r in rows]
        return out

    async def release(self, consumer: str, deliveries: Sequence[Delivery], *, started: bool) -> int:
        by_queue = group_by_queue(deliveries, _delivery_queue)
        n = 0
        mode = "interrupted" if started else "unstarted"
        with translate_errors(self.url):
            for name, group in by_queue.items():
                q = self.keys.queue(name)
                args: list[Any] = [GROUP, consumer, self._pel_scan, 30 * 86_400_000]  # idle past any lease
                for d in group:
                    args += [d.entry_id, d.deliveries, mode]
                n += int(await scripts.RELEASE.run(self._aio, [q.ready, q.reclaimed], args))
        return n

    async def prune_consumers(self, queue: str, idle_ms: int, *, keep: str = "", only: str = "") -> int:
        # Each worker run joins the group as a new consumer; consumers that own nothing and have been
        # idle long enough (dead or stopped workers) are removed so that the group stays bounded.
        removed = 0
        for name in self._level_names(queue):
            q = self.keys.queue(name)
            with translate_errors(self.url):
                removed += int(
                    await scripts.PRUNE_CONSUMERS.run(
                        self._aio, [q.ready, q.reclaimed], [GROUP, idle_ms, keep, only]
                    )
                )
        return removed

    async def heartbeat(
        self, worker_id: str, fields: dict[str, str], ttl_s: float, queues: Sequence[str]
    ) -> None:
        key = self.keys.worker(worker_id)
        ttl_ms = int(ttl_s * 1000)
        with translate_errors(self.url):
            now_s, now_us = await self._aio.time()
            now_ms = now_s * 1000 + now_us // 1000
            pipe = self._aio.pipeline(transaction=False)
            pipe.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
            pipe.pexpire(key, ttl_ms)
            pipe.zadd(self.keys.workers, {worker_id: now_ms + ttl_ms})
            pipe.zremrangebyscore(self.keys.workers, "-inf", now_ms)
            # the registry outlives any one worker's TTL (workers may use different TTLs); stale ids
            # are pruned by score above, and the whole key goes a while after the last heartbeat
            pipe.expire(self.keys.workers, WORKERS_REGISTRY_TTL_S)
            if queues:
                pipe.sadd(self.keys.queues, *queues)
                pipe.expire(self.keys.queues, KNOWN_QUEUES_TTL_S)
            await pipe.execute()

    async def unregister(self, worker_id: str) -> None:
        with translate_errors(self.url):
            pipe = self._aio.pipeline(transaction=False)
            pipe.delete(self.keys.worker(worker_id))
            pipe.zrem(self.keys.workers, worker_id)
            await pipe.execute()

    # ---- admin -----------------------------------------------------------------------------------
    def stats(self, queue: str) -> QueueStats:
        with translate_errors(self.url):
            levels = sorted(int(m) for m in self.sync.smembers(self.keys.levels(queue)))
        total = self._stats(queue)
        for level in levels:  # a queue that used priorities: its levels count as the queue
            part = self._stats(level_queue(queue, level))
            total = QueueStats(
                queue,
                total.ready + part.ready,
                total.delayed + part.delayed,
                total.running + part.running,
                total.dead,
            )
        return total

    def _stats(self, queue: str) -> QueueStats:
        q = self.keys.queue(queue)
        with translate_errors(self.url):
            pipe = self.sync.pipeline(transaction=False)
            pipe.xlen(q.ready)
            pipe.zcard(q.delayed)
            pipe.xlen(q.dead)
            pipe.xinfo_groups(q.ready)
            length, delayed, dead, groups = pipe.execute(raise_on_error=False)
        running = 0
        lag: int | None = None
        if isinstance(groups, list):  # an error reply when the stream does not exist yet
            for g in groups:
                if to_str(g.get("name", "")) == GROUP:
                    running = int(g.get("pending", 0))
                    lag = g.get("lag")
        length = length if isinstance(length, int) else 0
        # The group's lag (Redis 7+) counts the entries never delivered: exact. The stream's length
        # also holds acked entries that settle.lua trims in whole nodes only (see there), so on
        # Redis 6.2 "ready" may count a few of those while something runs, and is exact when idle.
        ready = int(lag) if lag is not None else max(0, length - running)
        return QueueStats(queue, ready, int(delayed), running, int(dead))

    def known_queues(self) -> list[str]:
        with translate_errors(self.url):
            return sorted(to_str(q) for q in self.sync.smembers(self.keys.queues))

    def workers(self) -> list[WorkerInfo]:
        with translate_errors(self.url):
            ids = [to_str(i) for i in self.sync.zrange(self.keys.workers, 0, -1)]
            pipe = self.sync.pipeline(transaction=False)
            for worker_id in ids:
                pipe.hgetall(self.keys.worker(worker_id))
            found = pipe.execute()
        return [
            WorkerInfo(worker_id, {to_str(k): to_str(v) for k, v in fields.items()})
            for worker_id, fields in zip(ids, found)
            if fields
        ]

    def dead_letters(self, queue: str, count: int) -> list[DeadLetter]:
        q = self.keys.queue(queue)
        with translate_errors(self.url):
            entries: Any = self.sync.xrange(q.dead, count=count)
        return _parse_dead_letters(entries)

    def replay_dead(self, queue: str, count: int, entry_id: str | None = None) -> int:
        q = self.keys.queue(queue)
        with translate_errors(self.url):
            return int(scripts.REPLAY_DEAD(self.sync, [q.dead, q.ready], [count, entry_id or ""]))

    def purge_dead(self, queue: str) -> int:
        q = self.keys.queue(queue)
        with translate_errors(self.url):
            pipe = self.sync.pipeline(transaction=True)
            pipe.xlen(q.dead)
            pipe.delete(q.dead)
            n, _ = pipe.execute()
        return int(n)

    def purge(self, queue: str) -> int:
        with translate_errors(self.url):
            levels = sorted(int(m) for m in self.sync.smembers(self.keys.levels(queue)))
        return sum(self._purge(name) for name in [queue, *(level_queue(queue, n) for n in levels)])

    def _purge(self, queue: str) -> int:
        q = self.keys.queue(queue)
        with translate_errors(self.url):
            deleted = 0
            while True:  # in bounded steps too: one DEL of a set of millions would block Redis
                n = int(self.sync.zremrangebyrank(q.delayed, 0, _PURGE_BATCH - 1))
                deleted += n
                if n == 0:
                    break
            while True:  # bounded script calls: a purge of millions never blocks Redis for long
                n = int(scripts.PURGE_READY(self.sync, [q.ready], [GROUP, _PURGE_BATCH]))
                deleted += n
                if n == 0:
                    return deleted

    def server_warnings(self) -> list[str]:
        with translate_errors(self.url):
            info = self.sync.info()
        warnings = []
        version = tuple(int(p) for p in str(info.get("redis_version", "0.0.0")).split(".")[:3])
        if version < MIN_REDIS_VERSION:
            raise BrokerError(
                f"Redis {info.get('redis_version')} is too old: celeriac needs Redis "
                f"{'.'.join(map(str, MIN_REDIS_VERSION))} or newer (XPENDING IDLE, ZRANGE BYSCORE)"
            )
        policy = str(info.get("maxmemory_policy", "noeviction"))
        if policy.startswith("allkeys"):
            warnings.append(
                f"Redis maxmemory-policy is {policy!r}: Redis may evict queue keys and lose tasks; "
                "use 'noeviction' (or a volatile-* policy) for a Redis that holds queues"
            )
        return warnings

    def close_sync(self) -> None:
        conn = getattr(self._own, "conn", None)
        if conn is not None:
            conn.disconnect()
            self._own.conn = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None


async def _two_commands(client: redis.asyncio.Redis, first: list[Any], second: list[Any]) -> tuple[Any, Any]:
    """Send two commands in one write on one connection and read both raw replies.

    Why not a redis-py pipeline: it costs about 100 us more per call than a single command, which
    this saves on every fetch. An error reply to either command is raised once both are read (the
    connection stays in step); any other failure (timeout, cancellation) drops the connection.
    """
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_packed_command(conn.pack_commands([first, second]))
        replies: list[Any] = []
        for _ in range(2):
            try:
                replies.append(await conn.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies[0], replies[1]


def _wait_s(next_due: Any, now_ms: Any) -> float | None:
    if int(next_due) < 0:
        return None
    return max(0.0, (int(next_due) - int(now_ms)) / 1000)


def _ttl_ms(ttl_s: float) -> int:
    return max(1, int(ttl_s * 1000))


def _stream_pairs(reply: Any) -> list[tuple[Any, Any]]:
    if isinstance(reply, dict):  # RESP3
        return list(reply.items())
    return [(item[0], item[1]) for item in reply]


def _delay_args(item: Enqueue | Settlement) -> list[Any]:
    if item.eta_ms is not None:
        return ["", int(item.eta_ms), item.data]
    return [int(item.delay_ms or 0), "", item.data]


def _settlement_queue(s: Settlement) -> str:
    return s.delivery.queue


def _delivery_queue(d: Delivery) -> str:
    return d.queue
