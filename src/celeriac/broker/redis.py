"""RedisBroker: queues as Redis streams with one consumer group, leases as pending-entry idle time.

Why streams: ``XREADGROUP`` takes a message and records its owner in one atomic step (the pending
entries list, PEL), it blocks without polling, and the PEL keeps a delivery count per message. A
lease is the entry's idle time: the worker renews it (``extend.lua``) while the task runs; a worker
that died stops renewing, and after ``lease_ms`` any worker takes the entry over (``reclaim.lua``).
Acks delete the entry (``XACK`` + ``XDEL``), so a queue holds only waiting and running messages:
a few dozen bytes of Redis memory per small queued task (figures: docs/design.md).

Why this module is long: it owns every Redis semantic of the queue (the producer's send path, the
lease protocol and the admin reads) in one module on purpose, so that one file answers "what does
celeriac do in Redis", on one server, a Redis Cluster (sharded queues, per-slot reads: the
blocking reads themselves are in :mod:`._cluster_reads`) or behind Sentinel (durable sends with
``WAIT``); the scripts, key schema and clients live in :mod:`celeriac._redis`.

Delayed messages wait in a sorted set scored by due time and are moved to the stream by
``promote.lua``. Every multi-key operation is a Lua script over the keys of one queue, all sharing the
queue's hash tag (see :mod:`celeriac._redis.keys`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import redis

from .._redis import scripts
from .._redis.client import (
    aclose_client,
    async_client,
    close_client,
    open_connections,
    remember_transport_options,
    sync_client,
    to_str,
    translate_error,
    translate_errors,
)
from .._redis.keys import GROUP, KeySchema, QueueKeys, level_queue, split_level
from .._redis.scripts import Batch
from .._topology import connection_options, kind_of
from .._urls import redact
from ..config import transport_options
from ..exceptions import BrokerError
from ._shards import cached_shard_names, earlier_shard_names, leftover_shards, shard_names
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
from .revoked import ControlCommand, Revocation, RevokedMirror, entry_time_ms

# _cluster_reads and _cluster_wait serve a Redis Cluster only: they are imported where a cluster
# needs them, so that a process on one Redis server does not load them (idle worker RSS)
if TYPE_CHECKING:
    import redis.asyncio

    from ..record import ResultWrite
    from ._cluster_reads import StreamReader

logger = logging.getLogger("celeriac.broker")

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
        url: ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL; ``redis+cluster://h1:p1,h2:p2``
            (``rediss+cluster://``) for a Redis Cluster; ``sentinel://h1:p1;sentinel://h2:p2`` (with
            ``master_name`` in ``transport_options``) or ``redis+sentinel://h1:p1,h2:p2/<master>/<db>``.
        prefix: key prefix (several apps can share one Redis).
        dead_letter_max: cap on each queue's dead-letter stream.
        max_connections: the worker's command pool size (the blocking read and pub/sub use one more each).
        sync_max_connections: the producer's and admin's connections' bound (``broker_pool_limit``;
            None: unbounded): up to half are threads' own send connections, the pool has the rest.
        transport_options: Celery's ``broker_transport_options`` (``master_name``, ``sentinel_kwargs``).
        queue_shards: queue name -> number of streams it is spread over (see :mod:`celeriac._redis.keys`).
        wait_replicas: a send (and a settle) returns only once this many replicas acknowledged it
            (Redis ``WAIT``); 0 does not wait.
        wait_timeout_ms: how long a send waits for its replicas before it fails.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "celeriac",
        dead_letter_max: int = 10_000,
        max_connections: int = 4,
        sync_max_connections: int | None = 8,
        transport_options: Mapping[str, Any] | None = None,
        queue_shards: Mapping[str, int] | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 5_000,
        revoke_expires_s: float = 86_400.0,
        revoked_max: int = 100_000,
    ) -> None:
        self.url = url
        #: bound of the producer/admin connection pool (Celery's broker_pool_limit; None: unbounded)
        self.sync_max_connections = sync_max_connections
        self.keys = KeySchema(prefix)
        self.dead_letter_max = dead_letter_max
        self.max_connections = max_connections
        self.transport_options = connection_options(transport_options)
        remember_transport_options(url, self.transport_options)
        self.queue_shards = {q: n for q, n in (queue_shards or {}).items() if n > 1}
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        # threads with an own connection (see _send): half of broker_pool_limit; the pool has the rest
        # (no limit: every thread may have its own)
        self._own_limit = sync_max_connections // 2 if sync_max_connections is not None else 1 << 30
        self.cluster = kind_of(url) == "cluster"
        self._rr: dict[str, int] = {}  # round-robin position of sends per sharded queue
        self._turn: dict[str, int] = {}  # the shard each fetch of a sharded queue starts at
        #: per queue, shard streams of an earlier queue_shards setting that still held tasks when the
        #: worker opened the queue: fetched (not sent to) with the queue's shards
        self._leftover: dict[str, list[str]] = {}
        self._reads: StreamReader | None = None
        # Any: a redis.Redis, or a RedisCluster (redis-py's two client types share no base class)
        self._sync: Any = None
        self._client: Any = None
        self._blocking: Any = None
        self._pubsub: Any = None
        # how much of a consumer's pending list the ownership checks read (settle, extend, release):
        # more than it can own at once, or deliveries past the first N would look lost
        self._pel_scan = 1000
        self._own = threading.local()  # this thread's own connection for single sends (see _send)
        self._own_lock = threading.Lock()
        self._own_total = 0  # threads of this process holding an own connection (at most _own_limit)
        self._own_pid = os.getpid()
        self.revoke_expires_s = revoke_expires_s
        self.revoked_max = revoked_max
        self._revocations = RevokedMirror(int(revoke_expires_s * 1000), revoked_max)
        # priority levels (1..9) in use per consumed queue, learned at open, from promote.lua's reply
        # and from 'levels' wake-ups; a queue absent here is read exactly as if priorities did not exist
        self._levels: dict[str, tuple[int, ...]] = {}
        self._learned: list[Revocation] = []  # revocations applied by the last read (see sync_revoked)
        self._entries_read = 0  # stream entries read by the last read (revocations and commands)
        self._control: redis.asyncio.Redis | None = None  # the control loop's blocking connection
        self._blocking_id: int | None = None  # CLIENT ID of the fetch's blocking connection
        # commands for workers read from the revocation stream (control.lua); None until open() has
        # loaded the stream: commands sent before this worker started are not for it
        self._controls: list[ControlCommand] | None = None

    @classmethod
    def from_conf(cls, url: str, conf: Any) -> RedisBroker:
        """The broker an app's settings (:class:`celeriac.config.Config`) describe."""
        return cls(
            url,
            prefix=conf.key_prefix,
            dead_letter_max=conf.dead_letter_max,
            revoke_expires_s=conf.revoke_expires_s,
            revoked_max=conf.revoked_max,
            transport_options=transport_options(conf),
            queue_shards=conf.queue_shards,
            wait_replicas=conf.broker_wait_replicas,
            wait_timeout_ms=int(conf.broker_wait_timeout_s * 1000),
            sync_max_connections=conf.broker_pool_limit,
        )

    # ---- clients ---------------------------------------------------------------------------------
    @property
    def sync(self) -> Any:
        """The synchronous client (created on first use)."""
        if self._sync is None:
            # threads' own send connections (see _send) and the pool share broker_pool_limit
            limit = self.sync_max_connections
            self._sync = sync_client(
                self.url,
                max_connections=None if limit is None else max(1, limit - self._own_limit),
                transport_options=self.transport_options,
            )
        return self._sync

    @property
    def _aio(self) -> Any:
        if self._client is None:
            raise BrokerError("consumer side not opened: call `await broker.open(queues)` first")
        return self._client

    # ---- producer --------------------------------------------------------------------------------
    def enqueue(self, item: Enqueue) -> None:
        q = self.keys.queue(self._shard_for_send(item.queue) if self.queue_shards else item.queue)
        if item.delay_ms is None and item.eta_ms is None:
            # the whole send path ends here: one XADD, one round trip (and a WAIT when sends are durable)
            self._send("XADD", q.ready, "*", "m", item.data)
            return
        with translate_errors(self.url):
            if self.wait_replicas:
                self._scripts_then_wait(
                    [(scripts.ENQUEUE_DELAYED, [q.delayed], [q.wake, *_delay_args(item)])]
                )
                return
            scripts.ENQUEUE_DELAYED(self.sync, [q.delayed], [q.wake, *_delay_args(item)])

    # ---- shards ----------------------------------------------------------------------------------
    def shards(self, queue: str) -> list[str]:
        """The stream names of ``queue``: itself, or ``queue``, ``queue~1`` ... for a sharded queue.
        Each shard has its own hash tag, so on a cluster the shards spread over the slots."""
        names = shard_names(queue, self.queue_shards.get(queue, 1))
        leftover = self._leftover.get(queue)
        return [*names, *leftover] if leftover else names

    def _shard_for_send(self, queue: str) -> str:
        n = self.queue_shards.get(queue, 1)
        if n <= 1:
            return queue
        k = self._rr.get(queue)
        if k is None:  # this process's first send there: say where its tasks go (see _shards)
            self._record_sharding(queue, n)
            k = 0
        self._rr[queue] = (k + 1) % n
        return cached_shard_names(queue, n)[k]

    def _record_sharding(self, queue: str, n: int) -> None:
        with translate_errors(self.url):
            self.sync.sadd(self.keys.shardings(queue), n)

    def _earlier_shards(self, queue: str) -> list[str]:
        """Shard names of ``queue`` under the earlier ``queue_shards`` settings recorded for it."""
        with translate_errors(self.url):
            counts = self.sync.smembers(self.keys.shardings(queue))
        return earlier_shard_names(queue, counts, shard_names(queue, self.queue_shards.get(queue, 1)))

    def _every_shard(self, queue: str) -> list[str]:
        """The admin commands' view of a queue: its shards and those of every earlier setting, so
        status, purge and the dead-letter commands cover tasks wherever they wait."""
        return [*shard_names(queue, self.queue_shards.get(queue, 1)), *self._earlier_shards(queue)]

    def _find_leftover_shards(self, queues: Sequence[str]) -> None:
        """Consume, with each queue's shards, the shard streams an earlier ``queue_shards`` setting
        left holding tasks (see :mod:`._shards`); said once in the log."""
        for queue in queues:
            n = self.queue_shards.get(queue, 1)
            if n > 1:
                self._record_sharding(queue, n)
            with translate_errors(self.url):
                found = leftover_shards(self.sync, self.keys, self._earlier_shards(queue))
            if found:
                self._leftover[queue] = [name for name, _ in found]
                logger.warning(
                    "queue %r: %d task(s) wait in shard streams of an earlier queue_shards setting (%s); "
                    "this worker consumes them with the queue's current shards",
                    queue,
                    sum(n for _, n in found),
                    ", ".join(name for name, _ in found),
                )

    def _scripts_then_wait(self, calls: Sequence[tuple[scripts.Script, list[Any], Sequence[Any]]]) -> None:
        """Script calls and a WAIT in one pipeline, so on one connection: WAIT counts the replicas
        holding that connection's writes. Calls that met an empty script cache run again (loaded).
        On a cluster: each node's calls and a WAIT on one connection of that node (_cluster_wait.py)."""
        if self.cluster:
            from ._cluster_wait import run_then_wait  # Redis Cluster only (see the imports)

            items = [(keys[0], ("EVALSHA", s.sha, len(keys), *keys, *args), s) for s, keys, args in calls]
            run_then_wait(self.sync, items, *self._wait_args())
            return
        todo = list(calls)
        for _attempt in range(3):
            pipe: Any = self.sync.pipeline(transaction=False)
            for script, keys, args in todo:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            replies = pipe.execute(raise_on_error=False)
            failed = []
            for call, reply in zip(todo, replies):
                if isinstance(reply, redis.exceptions.NoScriptError):
                    failed.append(call)
                elif isinstance(reply, Exception):
                    raise reply
            if isinstance(replies[-1], Exception):
                raise replies[-1]
            if not failed:
                self._check_acked(replies[-1])
                return
            for script in {c[0] for c in failed}:
                self.sync.script_load(script.text)
            todo = failed
        raise BrokerError(f"Redis at {redact(self.url)}: scripts could not be loaded")

    def _wait_args(self) -> tuple[int, int, Callable[[Any], None]]:
        return self.wait_replicas, self.wait_timeout_ms, self._check_acked

    def _check_acked(self, acked: Any) -> None:
        if int(acked) < self.wait_replicas:
            raise BrokerError(
                f"Redis at {redact(self.url)}: only {int(acked)} of {self.wait_replicas} replica(s) "
                f"acknowledged the write within {self.wait_timeout_ms} ms (broker_wait_replicas): "
                "it may be lost if the master fails now; the send may be repeated (at least once)"
            )

    def _send(self, *args: Any) -> Any:
        """One command on this thread's own connection.

        Why not ``self.sync.execute_command``: redis-py's pooled path (pool checkout and return, retry
        wrapper, metrics hooks) costs about as much as the loopback round trip itself. A connection per
        thread needs no lock; a forked child makes its own. On a connection error the command goes
        through the pooled client once, which reconnects and retries by its policy (a resend, as
        redis-py's own retry does: a send stays at-least-once).
        """
        if self.cluster:  # the cluster client routes by key and follows MOVED/ASK and failovers
            with translate_errors(self.url):
                if self.wait_replicas:  # the write and a WAIT on one connection of its node
                    from ._cluster_wait import run_then_wait  # Redis Cluster only (see the imports)

                    items = [(args[1], args, None)]
                    return run_then_wait(self.sync, items, *self._wait_args())[0]
                return self.sync.execute_command(*args)
        conn = self._own_connection()
        if conn is None:
            with translate_errors(self.url):
                if not self.wait_replicas:
                    return self.sync.execute_command(*args)
                pipe: Any = self.sync.pipeline(transaction=False)
                pipe.execute_command(*args)
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                reply, acked = pipe.execute()
                self._check_acked(acked)
                return reply
        try:
            try:
                if self.wait_replicas:  # WAIT counts the replicas that hold this connection's writes
                    conn.send_packed_command(
                        conn.pack_commands([args, ("WAIT", self.wait_replicas, self.wait_timeout_ms)])
                    )
                    reply = conn.read_response()
                    self._check_acked(conn.read_response())
                    return reply
                conn.send_command(*args)
                return conn.read_response()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                conn.disconnect()
                reply = self.sync.execute_command(*args)
                if self.wait_replicas:
                    self._check_acked(
                        self.sync.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                    )
                return reply
        except (redis.RedisError, OSError) as exc:
            raise translate_error(exc, self.url) from None

    def enqueue_many(self, items: Sequence[Enqueue]) -> None:
        if not items:
            return
        ready: dict[str, list[bytes]] = {}
        delayed: dict[str, list[Any]] = {}
        shard = self._shard_for_send if self.queue_shards else None  # none sharded: no call per item
        for item in items:
            queue = shard(item.queue) if shard is not None else item.queue
            if item.delay_ms is None and item.eta_ms is None:
                ready.setdefault(queue, []).append(item.data)
            else:
                delayed.setdefault(queue, []).extend(_delay_args(item))
        if ready:
            calls: list[tuple[scripts.Script, list[Any], Sequence[Any]]] = []
            for name, messages in ready.items():
                q = self.keys.queue(name)
                for start in range(0, len(messages), _BULK_CHUNK):
                    calls.append((scripts.ENQUEUE_MANY, [q.ready], messages[start : start + _BULK_CHUNK]))
            self._stream_scripts(calls)
        if delayed and self.wait_replicas:
            with translate_errors(self.url):
                self._scripts_then_wait(
                    [
                        (
                            scripts.ENQUEUE_DELAYED,
                            [self.keys.queue(n).delayed],
                            [self.keys.queue(n).wake, *args],
                        )
                        for n, all_args in delayed.items()
                        for start in range(0, len(all_args), 3 * _BULK_CHUNK)
                        for args in [all_args[start : start + 3 * _BULK_CHUNK]]
                    ]
                )
        elif delayed:
            with translate_errors(self.url):
                pipe: Any = self.sync.pipeline(transaction=False)
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
        conn = None if self.cluster else self._own_connection()
        if conn is None:  # per-node pipelines on a cluster, routed by each call's key; or the pool
            with translate_errors(self.url):
                if self.wait_replicas:
                    self._scripts_then_wait(calls)
                    return
                pipe: Any = self.sync.pipeline(transaction=False)
                batch = Batch()
                for script, keys, args in calls:
                    batch.add(pipe, script, keys, args)
                batch.repair(self.sync, pipe.execute(raise_on_error=False))
            return
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
            for script, keys, args in failed if not self.wait_replicas else ():
                script(self.sync, keys, args)
            if failed and self.wait_replicas:
                self._scripts_then_wait(failed)
            elif self.wait_replicas:
                conn.send_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                self._check_acked(conn.read_response())
        except (redis.RedisError, OSError) as exc:
            raise translate_error(exc, self.url) from None

    def _own_connection(self) -> Any:
        """This thread's own connection (made on first use; a forked child makes its own), or None
        once half of ``broker_pool_limit`` threads have one: further threads share the bounded pool, so that a
        producer (or a worker of 100 threads whose tasks send) holds a bounded number of connections."""
        own = self._own
        conn = getattr(own, "conn", None)
        pid = os.getpid()
        if conn is None or own.pid != pid:
            with self._own_lock:
                if self._own_pid != pid:  # a forked child starts counting afresh
                    self._own_pid, self._own_total = pid, 0
                if self._own_total >= self._own_limit:
                    return None
                self._own_total += 1
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
            transport_options=self.transport_options,
            queue_shards=self.queue_shards,
            wait_replicas=self.wait_replicas,
            wait_timeout_ms=self.wait_timeout_ms,
            # the worker's own sends (retries from tasks run in threads) share a small pool
            sync_max_connections=min(self.sync_max_connections or 4, 4),
            revoke_expires_s=self.revoke_expires_s,
            revoked_max=self.revoked_max,
        )
        broker._pel_scan = max(1000, 2 * max_owned)
        return broker

    def shared_async(self) -> Any:
        """The worker's asyncio command client (made now if the broker is not open yet: it connects
        on first use, on the worker's loop). The worker's other parts on this Redis (flow gate,
        monitor recorder, workflow store) use it too instead of a pool each, so that a worker holds a
        fixed number of connections whatever its concurrency; only :meth:`close` closes it."""
        if self._client is None:
            self._client = async_client(
                self.url, max_connections=self.max_connections, transport_options=self.transport_options
            )
            self._client.set_response_callback("XREADGROUP", _raw_reply)
        return self._client

    async def open(self, queues: Sequence[str]) -> None:
        if self._blocking is None and self._reads is None:
            options = self.transport_options
            self.shared_async()
            # one connection that may sit in a blocking XREADGROUP. Its socket timeout exceeds the
            # longest BLOCK (reads are capped at _MAX_BLOCK_MS) so that a silent peer (a network
            # partition: no reset, no reply) fails the read instead of hanging the fetch loop forever
            read_timeout_s = _MAX_BLOCK_MS / 1000 + _BLOCK_TIMEOUT_MARGIN_S
            if self.cluster:  # one connection per stream, each to its slot's node (see _cluster_reads)
                from ._cluster_reads import StreamReader  # Redis Cluster only (see the imports)

                self._reads = StreamReader(self._client, read_timeout_s)
            else:
                self._blocking = async_client(
                    self.url, max_connections=1, socket_timeout_s=read_timeout_s, transport_options=options
                )
                self._blocking.set_response_callback("XREADGROUP", _raw_reply)
        await asyncio.to_thread(self._find_leftover_shards, queues)
        for name in self._all_shards(queues):
            await self._ensure_group(self.keys.queue(name))
        with translate_errors(self.url):
            for name in queues:
                self._set_levels(name, await self._aio.smembers(self.keys.levels(name)))
        try:  # to end a blocked read when a queue gets its first priority level (see promote)
            if self._blocking is None:  # a cluster: no single blocking connection
                raise redis.RedisError("no blocking connection")
            self._blocking_id = int(await self._blocking.client_id())
        except (redis.RedisError, OSError):
            self._blocking_id = None  # an ACL without CLIENT ID: a new level is seen at the next read
        await self.sync_revoked()  # load every revocation still in force before the first task starts
        await self._sync_rest()
        if self._controls is None:
            self._controls = []  # from here on, control commands are for this worker
        channels = [self.keys.queue(name).wake for name in self._all_shards(queues)]
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

    def _all_shards(self, queues: Sequence[str]) -> list[str]:
        return [shard for name in queues for shard in self.shards(name)]

    async def close(self) -> None:
        if self._reads is not None:
            await self._reads.close()
            self._reads = None
        for closer in (self._pubsub, self._client, self._blocking, self._control):
            if closer is not None:
                try:
                    await (closer.aclose() if closer is self._pubsub else aclose_client(closer))
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
            for name in self._all_shards(queues):
                await self._ensure_group(self.keys.queue(name))
            return []

    async def _fetch(self, queues: Sequence[str], consumer: str, count: int, block_ms: int) -> list[Delivery]:
        if self._reads is not None:
            return await self._fetch_cluster(queues, consumer, count, block_ms)
        if self._levels and any(name in self._levels for name in queues):
            return await self._fetch_levels(queues, consumer, count, block_ms)
        out: list[Delivery] = []
        with translate_errors(self.url):
            if len(queues) == 1 and queues[0] not in self.queue_shards and not self._leftover:
                return await self._read(queues, consumer, count, block_ms)
            # several streams: take them in priority order without blocking, then block on all. A
            # sharded queue's shards are read from a rotating start, so that each gets its turn.
            for name in queues:
                for shard in self._rotated(name):
                    out += await self._read([shard], consumer, count - len(out), None)
                    if len(out) >= count:
                        return out
            if out or not block_ms:
                return out
            return await self._read(self._all_shards(queues), consumer, 1, block_ms)

    def _rotated(self, queue: str) -> list[str]:
        shards = self.shards(queue)
        if len(shards) == 1:
            return shards
        k = self._turn.get(queue, 0) % len(shards)
        self._turn[queue] = k + 1
        return shards[k:] + shards[:k]

    async def _fetch_cluster(
        self, queues: Sequence[str], consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """A sweep of every stream at once without blocking, then (when all were empty) a blocking read
        on every stream at once (see :mod:`._cluster_reads`). Reads beyond ``count`` go back at once."""
        assert self._reads is not None
        head = ["XREADGROUP", "GROUP", GROUP, consumer, "COUNT"]
        out: list[Delivery] = []

        async def read(streams: list[str], each: int, block: list[Any]) -> None:
            nonlocal out
            calls = [
                (self.keys.queue(s).ready, [*head, each, *block, "STREAMS", self.keys.queue(s).ready, ">"])
                for s in streams
            ]
            replies = await reads.read_all(calls, bool(block))
            for shard, reply in zip(streams, replies):
                for _stream, entries in _stream_pairs(reply or []):
                    out += _shard_deliveries(shard, _parse_entries(shard, entries))

        reads = self._reads
        with translate_errors(self.url):
            for name in queues:  # queue order; a queue with priority levels: highest first (level 0,
                # the queue's first shard, included), then its other shards
                if len(self._level_names(name)) > 1:
                    out += await self._take_levels(name, consumer, count - len(out))
                if len(out) >= count:
                    break
                # fewer free slots than shards: read only as many shards (the rotation gives each its
                # turn), so that the sweep never takes more than it may run
                shards = self._rotated(name)[: count - len(out)]
                await read(shards, max(1, (count - len(out)) // len(shards)), [])
            if not out and block_ms:
                every = [*self._all_shards(queues), *(lv for q in queues for lv in self._level_names(q)[1:])]
                await read(every, 1, ["BLOCK", min(block_ms, _MAX_BLOCK_MS)])
            if len(out) > count:
                await self.release(consumer, out[count:], started=False)
                out = out[:count]
            if out:  # as on one server: revocations that reached Redis before these are known
                await self.sync_revoked()
                await self._sync_rest()
        return out

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
            await self._sync_rest()
        if not reply:
            return []
        by_stream = {to_str(stream): entries for stream, entries in _stream_pairs(reply)}
        out: list[Delivery] = []
        for name, stream in zip(queues, streams):
            out += _shard_deliveries(name, _parse_entries(name, by_stream.get(stream, [])))
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
                    out += await self._take_levels(name, consumer, count - len(out))
                if len(out) >= count:
                    break
            if not out and block_ms:
                every = [n for name in queues for n in self._level_names(name)]
                return await self._read(every, consumer, 1, block_ms)
            if out:
                await self.sync_revoked()
                await self._sync_rest()
        return out

    async def _take_levels(self, queue: str, consumer: str, count: int) -> list[Delivery]:
        """Up to ``count`` messages of ``queue`` and its priority levels, highest first, in one
        ``fetch_levels.lua`` call (every level is in the queue's slot, so this works on a cluster)."""
        names = self._level_names(queue)
        reply = await scripts.FETCH_LEVELS.run(
            self._aio, [self.keys.queue(n).ready for n in names], [GROUP, consumer, count]
        )
        out: list[Delivery] = []
        for i in range(0, len(reply), 2):
            out += _parse_entries(names[int(reply[i]) - 1], reply[i + 1])
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
            reply = await client.execute_command(*args)
        before = self._revocations.last_id
        self._apply_revoked(reply)
        if before == self._revocations.last_id:
            return []
        return self._learned

    async def _sync_rest(self) -> None:
        """After a read of a whole chunk of the revocation stream: read on to its end."""
        while self._entries_read >= _REVOKED_CHUNK:
            await self.sync_revoked()

    def _control_client(self) -> redis.asyncio.Redis:
        client = self._control
        if client is None:
            client = self._control = async_client(
                self.url,
                max_connections=1,
                socket_timeout_s=_MAX_BLOCK_MS / 1000 + _BLOCK_TIMEOUT_MARGIN_S,
                transport_options=self.transport_options,
            )
        return client

    def _apply_revoked(self, reply: Any) -> int:
        """Apply an XREAD reply of the revocation stream; return the number of entries read."""
        self._learned = []
        self._entries_read = 0
        mirror = self._revocations
        for _stream, entries in _stream_pairs(reply or []):
            for entry_id, fields in entries:
                if isinstance(fields, (list, tuple)):
                    fields = dict(zip(fields[::2], fields[1::2]))
                eid = to_str(entry_id)
                self._entries_read += 1
                if b"c" in fields:
                    mirror.last_id = eid
                    self._note_control(fields)
                    continue
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
        return self._entries_read

    def _note_control(self, fields: dict[bytes, bytes]) -> None:
        if self._controls is not None:
            dest = to_str(fields.get(b"d", b""))
            self._controls.append(
                ControlCommand(to_str(fields[b"c"]), tuple(d for d in dest.split(",") if d))
            )

    def send_control(self, command: str, destination: Sequence[str] = ()) -> None:
        ttl_ms = max(1, int(self.revoke_expires_s * 1000))
        with translate_errors(self.url):
            scripts.CONTROL(
                self.sync, [self.keys.revoked], [command, ",".join(destination), self.revoked_max, ttl_ms]
            )

    def take_controls(self) -> list[ControlCommand]:
        controls = self._controls
        if not controls:
            return []
        self._controls = []
        return controls

    def results_location(self) -> Hashable | None:
        if self.cluster:
            # result keys are in other slots than the queue's keys: settle.lua cannot write them
            # atomically with the acks, so the worker takes the separate fenced path (see below)
            return None
        # settle.lua writes the results of owned deliveries with their acks, to the keys a
        # RedisResultBackend on the same URL and prefix reads. Result keys have no queue hash tag
        # (AsyncResult knows only the task id): fine on one server, but a broker for Redis Cluster
        # must not offer this capability, so that the worker takes the other fenced path
        # (extend.lua checks ownership, then single-key result writes, then settle).
        return ("redis", self.url, self.keys.prefix, repr(sorted(self.transport_options.items())))

    async def settle(self, consumer: str, settlements: Sequence[Settlement]) -> list[Delivery]:
        return await self.settle_with_results(consumer, settlements, ())

    async def settle_with_results(
        self, consumer: str, settlements: Sequence[Settlement], early: Sequence[ResultWrite]
    ) -> list[Delivery]:
        results = early
        by_queue = _by_stream(settlements)
        raw = _raw_id
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
                # the raw ids (_raw_id inlined: this runs for every task)
                acks = " ".join(
                    [
                        f"{s.delivery.entry_id.partition('@')[0]} {s.delivery.deliveries}"
                        for s in group
                        if s.kind == "ack"
                    ]
                )
                keys = [q.ready, q.delayed, q.dead, q.reclaimed]
                args: list[Any] = [GROUP, consumer, self._pel_scan, self.dead_letter_max, q.wake, acks, 0]
                for s in group:
                    res = s.result
                    if res is not None:  # written by settle.lua only while the delivery is owned
                        keys.append(self.keys.result(res.task_id))
                        args += [raw(s.delivery), s.delivery.deliveries, _ttl_ms(res.ttl_s), res.payload]
                args[6] = len(keys) - 4
                for s in group:
                    d = s.delivery
                    if s.unique is not None and s.kind != "retry":
                        keys.append(self.keys.unique(split_level(name)[0], s.unique))
                        args += ["u", d.entry_id, d.deliveries, s.task_id, len(keys)]
                    if s.kind == "ack":
                        continue
                    if s.kind == "retry":
                        args += ["r", raw(d), d.deliveries, *_delay_args(s)]
                    else:
                        args += ["d", raw(d), d.deliveries, s.data, s.reason]
                batch.add(pipe, scripts.SETTLE, keys, args)
                order.append(group)
            if self.wait_replicas and self.cluster:  # each node's calls and a WAIT, on one connection
                from ._cluster_wait import arun_then_wait  # Redis Cluster only (see the imports)

                items = [
                    (keys[0], ("EVALSHA", sc.sha, len(keys), *keys, *args), sc)
                    for sc, keys, args in batch.calls.values()
                ]
                replies = await arun_then_wait(self._aio, items, *self._wait_args())
                return self._fenced(order, replies[len(results) :])
            if self.wait_replicas:  # outcomes that must not be lost: acked only once replicated
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            replies = await pipe.execute(raise_on_error=False)
            if self.wait_replicas:
                acked = replies.pop()
                if isinstance(acked, Exception):
                    raise acked
                if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                    replies = await batch.arepair(self._aio, replies)
                    acked = await self._aio.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                self._check_acked(acked)
            replies = await batch.arepair(self._aio, replies)
        return self._fenced(order, replies[len(results) :])

    @staticmethod
    def _fenced(order: list[Any], replies: Sequence[Any]) -> list[Delivery]:
        """The deliveries settle.lua found no longer owned (one reply per queue's call)."""
        fenced: list[Delivery] = []
        for group, reply in zip(order, replies):
            if reply:  # ids of deliveries no longer owned (usually none)
                lost = {to_str(i) for i in reply}
                fenced += [s.delivery for s in group if _raw_id(s.delivery) in lost]
        return fenced

    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        by_queue = group_by_queue(deliveries, _delivery_queue)
        lost: list[Delivery] = []
        with translate_errors(self.url):
            for name, group in by_queue.items():
                q = self.keys.queue(name)
                args: list[Any] = [GROUP, consumer, self._pel_scan]
                for d in group:
                    args += [_raw_id(d), d.deliveries]
                reply = await scripts.EXTEND.run(self._aio, [q.ready], args)
                gone = {to_str(i) for i in reply}
                lost += [d for d in group if _raw_id(d) in gone]
        return lost

    async def reclaim(
        self, queue: str, consumer: str, count: int, lease_ms: int, max_deliveries: int
    ) -> tuple[list[Delivery], int]:
        out: list[Delivery] = []
        dead = 0
        for name in [*self.shards(queue), *self._level_names(queue)[1:]]:
            if len(out) >= count:
                break
            got, n = await self._reclaim(name, consumer, count - len(out), lease_ms, max_deliveries)
            out += _shard_deliveries(name, got)
            dead += n
        if out:  # as after a fetch: revocations that reached Redis before the takeover are known
            await self.sync_revoked()
            await self._sync_rest()
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
        waits = [await self._promote(shard) for shard in self.shards(queue)]
        found = [w for w in waits if w is not None]
        return min(found) if found else None

    async def _promote(self, queue: str) -> float | None:
        q = self.keys.queue(queue)
        with translate_errors(self.url):
            # the queue's own level also reports which priority levels exist (no extra round trip)
            reply = await scripts.PROMOTE.run(
                self._aio, [q.delayed, q.ready, self.keys.levels(queue)], [PROMOTE_BATCH]
            )
            if self._set_levels(queue, reply[3]):
                # a new level: end the fetch's blocked read (it returns as if it timed out), so that
                # the next read covers the level at once instead of after the block timeout
                if self._reads is not None:  # a cluster: one blocked read per stream
                    await self._reads.unblock_all()
                elif self._blocking_id is not None:
                    try:
                        await self._aio.execute_command("CLIENT", "UNBLOCK", self._blocking_id)
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
        try:
            await self._pubsub.get_message(timeout=timeout_s)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if self.cluster or kind_of(self.url) == "sentinel":
                # the node holding the subscription failed over: subscribe again (on the new master)
                channels = [self.keys.queue(n).wake for n in self._all_shards(queues)]
                self._pubsub = None
                await asyncio.sleep(min(timeout_s, 0.5))
                try:
                    self._pubsub = self._aio.pubsub(ignore_subscribe_messages=True)
                    await self._pubsub.subscribe(*channels)
                except (redis.RedisError, OSError):
                    pass
                return
            raise translate_error(exc, self.url) from None
        except redis.RedisError as exc:
            raise translate_error(exc, self.url) from None

    async def pending(self, queue: str, consumer: str) -> list[Delivery]:
        out: list[Delivery] = []
        for name in [*self.shards(queue), *self._level_names(queue)[1:]]:
            q = self.keys.queue(name)
            with translate_errors(self.url):
                rows = await self._aio.xpending_range(
                    q.ready, GROUP, "-", "+", self._pel_scan, consumername=consumer
                )
            out += _shard_deliveries(
                name,
                [Delivery(name, to_str(r["message_id"]), b"", int(r["times_delivered"])) for r in rows],
            )
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
                    args += [_raw_id(d), d.deliveries, mode]
                n += int(await scripts.RELEASE.run(self._aio, [q.ready, q.reclaimed], args))
        return n

    async def prune_consumers(self, queue: str, idle_ms: int, *, keep: str = "", only: str = "") -> int:
        n = 0
        for shard in self.shards(queue):
            n += await self._prune_consumers(shard, idle_ms, keep=keep, only=only)
        return n

    async def _prune_consumers(self, queue: str, idle_ms: int, *, keep: str = "", only: str = "") -> int:
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
            pipe.hset(key, mapping=dict(fields))
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

    def connections(self) -> int:
        """Redis connections this broker holds now (worker heartbeat field ``connections``): its
        command pool (which the worker's flow gate, recorder and workflow store share, and where its
        pub/sub connection comes from), the blocking read, the revocation read, the sync client."""
        own = self._own_total
        reads = self._reads.connections if self._reads is not None else 0
        return (
            open_connections(self._client)
            + open_connections(self._blocking)
            + open_connections(self._control)
            + open_connections(self._sync)
            + own
            + reads
        )

    # ---- admin -----------------------------------------------------------------------------------
    def stats(self, queue: str) -> QueueStats:
        with translate_errors(self.url):
            levels = sorted(int(m) for m in self.sync.smembers(self.keys.levels(queue)))
        # a sharded queue's shards, and a queue that used priorities' levels, count as the queue
        shards = self._every_shard(queue)
        names = [*shards, *(level_queue(queue, level) for level in levels)]
        parts = [self._stats(name) for name in names]
        return QueueStats(
            queue,
            sum(p.ready for p in parts),
            sum(p.delayed for p in parts),
            sum(p.running for p in parts),
            sum(p.dead for p in parts[: len(shards)]),  # levels share the queue's dead letters
        )

    def _stats(self, queue: str) -> QueueStats:
        q = self.keys.queue(queue)
        with translate_errors(self.url):
            pipe: Any = self.sync.pipeline(transaction=False)
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
            pipe: Any = self.sync.pipeline(transaction=False)
            for worker_id in ids:
                pipe.hgetall(self.keys.worker(worker_id))
            found = pipe.execute()
        return [
            WorkerInfo(worker_id, {to_str(k): to_str(v) for k, v in fields.items()})
            for worker_id, fields in zip(ids, found)
            if fields
        ]

    def dead_letters(self, queue: str, count: int) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for k, shard in enumerate(self._every_shard(queue)):
            q = self.keys.queue(shard)
            with translate_errors(self.url):
                entries: Any = self.sync.xrange(q.dead, count=count - len(out))
            suffix = shard.rpartition("~")[2] if k else ""
            for letter in _parse_dead_letters(entries):
                if k:  # the shard travels in the id, as for deliveries
                    letter = DeadLetter(
                        f"{letter.entry_id}@{suffix}",
                        letter.task_id,
                        letter.data,
                        letter.reason,
                        letter.time_ms,
                    )
                out.append(letter)
            if len(out) >= count:
                break
        return out

    def replay_dead(self, queue: str, count: int, entry_id: str | None = None) -> int:
        n = 0
        for k, shard in enumerate(self._every_shard(queue)):
            q = self.keys.queue(shard)
            if entry_id:
                raw, _, at = entry_id.partition("@")
                if at != (shard.rpartition("~")[2] if k else ""):
                    continue
                with translate_errors(self.url):
                    return int(scripts.REPLAY_DEAD(self.sync, [q.dead, q.ready], [count, raw]))
            with translate_errors(self.url):
                n += int(scripts.REPLAY_DEAD(self.sync, [q.dead, q.ready], [count - n, ""]))
            if n >= count:
                break
        return n

    def purge_dead(self, queue: str) -> int:
        return sum(self._purge_dead(shard) for shard in self._every_shard(queue))

    def _purge_dead(self, queue: str) -> int:
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
        names = [*self._every_shard(queue), *(level_queue(queue, n) for n in levels)]
        return sum(self._purge(name) for name in names)

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
        # INFO, not CONFIG GET: managed services (ElastiCache, Memorystore, Heroku) forbid CONFIG
        with translate_errors(self.url):
            if self.cluster:  # every master: each holds some of the queues
                infos = list(self.sync.info(target_nodes=self.sync.PRIMARIES).values())
            else:
                infos = [self.sync.info()]
        warnings: list[str] = []
        for info in infos:
            for warning in self._info_warnings(info):
                if warning not in warnings:
                    warnings.append(warning)
        return warnings

    def _info_warnings(self, info: Any) -> list[str]:
        warnings = []
        version = tuple(int(p) for p in str(info.get("redis_version", "0.0.0")).split(".")[:3])
        if version < MIN_REDIS_VERSION:
            raise BrokerError(
                f"Redis {info.get('redis_version')} is too old: celeriac needs Redis "
                f"{'.'.join(map(str, MIN_REDIS_VERSION))} or newer (XPENDING IDLE, ZRANGE BYSCORE)"
            )
        if "maxmemory_policy" not in info:  # a managed Redis may hide it (CONFIG is forbidden there too)
            warnings.append(
                "cannot read Redis maxmemory-policy (not in INFO): make sure it is 'noeviction' (or a "
                "volatile-* policy), or Redis may evict queue keys and lose tasks"
            )
        policy = str(info.get("maxmemory_policy", "noeviction"))
        if policy.startswith("allkeys"):
            warnings.append(
                f"Redis maxmemory-policy is {policy!r}: Redis may evict queue keys and lose tasks; "
                "use 'noeviction' (or a volatile-* policy) for a Redis that holds queues"
            )
        return warnings

    def close_idle_sync(self) -> None:
        """Close the idle connections of the synchronous client: a worker's start-up checks (server,
        worker id) use it, and a worker whose tasks never send then holds only its asyncio ones. A
        send opens one again."""
        if not self.cluster and self._sync is not None:
            self._sync.connection_pool.disconnect(inuse_connections=False)

    def close_sync(self) -> None:
        conn = getattr(self._own, "conn", None)
        if conn is not None:
            conn.disconnect()
            self._own.conn = None
            with self._own_lock:
                self._own_total = max(0, self._own_total - 1)
        if self._sync is not None:
            close_client(self._sync)
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


def _shard_deliveries(shard: str, deliveries: list[Delivery]) -> list[Delivery]:
    """Deliveries of shard ``queue~k.s`` as seen outside the broker: the queue's own name, and the
    shard suffix carried in the entry id (``<stream id>@k.s``), which the worker treats as opaque."""
    name, sep, k = shard.rpartition("~")
    if not sep:
        return deliveries
    return [Delivery(name, f"{d.entry_id}@{k}", d.data, d.deliveries) for d in deliveries]


def _raw_id(d: Delivery) -> str:
    return d.entry_id.partition("@")[0]


def _by_stream(settlements: Sequence[Settlement]) -> dict[str, list[Settlement]]:
    """Settlements grouped by the stream (shard) their deliveries came from, in first-seen order
    (``group_by_queue`` by ``_delivery_queue``, with no call for a delivery of an unsharded queue:
    this runs for every task)."""
    groups: dict[str, list[Settlement]] = {}
    for s in settlements:
        d = s.delivery
        name = d.queue if "@" not in d.entry_id else _delivery_queue(d)
        group = groups.get(name)
        if group is None:
            groups[name] = [s]
        else:
            group.append(s)
    return groups


def _delivery_queue(d: Delivery) -> str:
    """The stream (shard) name a delivery came from."""
    _raw, sep, k = d.entry_id.partition("@")
    return f"{d.queue}~{k}" if sep else d.queue
