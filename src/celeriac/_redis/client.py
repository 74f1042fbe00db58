"""Redis client construction and error translation shared by the broker and the result backend.

redis-py (with hiredis when installed) does the protocol work; this module only chooses timeouts and
retries and turns redis-py's exceptions into celeriac's tree, with passwords removed from messages.
URL checks and redaction live in ``_urls.py`` (no redis-py import) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .._topology import Endpoint, kind_of, parse
from .._urls import has_password, redact
from ..exceptions import BrokerConnectionError, BrokerError, BrokerFullError

#: transport options (Sentinel ``master_name``, ``sentinel_kwargs``) of the URLs this process's apps
#: use: every client made for such a URL gets them, also where only the URL is passed along
#: (the workflow store, flow control, the monitor recorder, ``celeriac events``)
_TRANSPORT_OPTIONS: dict[str, dict[str, Any]] = {}


def _untyped(fn: Any) -> Any:
    """redis-py annotates its Sentinel classes in some versions only: called through ``Any`` they type-check
    against every supported version (a ``type: ignore`` is an error on one side or the other)."""
    return cast(Any, fn)


def remember_transport_options(url: str, options: Mapping[str, Any] | None) -> None:
    """Record the transport options of ``url`` for clients made later from the URL alone."""
    if options:
        _TRANSPORT_OPTIONS[url] = dict(options)


def _options_for(url: str, given: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return given if given else _TRANSPORT_OPTIONS.get(url)


def _driver_info() -> dict[str, Any]:
    """The ``CLIENT SETINFO`` identity of a connection, with redis-py's version taken from the module.

    Left to itself, a redis-py with ``driver_info`` (8.2 here) asks ``importlib.metadata`` for its
    own version whenever it makes a connection: the first ask scans every entry of every ``sys.path``
    directory and keeps the result, and in a worker it pushed the interpreter's table of interned
    strings to its next size: about 0.8 MiB of an idle worker's RSS (benchmarks/README.md). The
    identity sent is the same. A redis-py without ``driver_info`` gets nothing: it does as it did.
    """
    try:
        from redis.driver_info import DriverInfo
    except ImportError:
        return {}
    return {"driver_info": DriverInfo(lib_version=redis.__version__)}


def sync_client(
    url: str,
    *,
    socket_timeout_s: float = 5.0,
    retries: int = 2,
    max_connections: int | None = 8,
    transport_options: Mapping[str, Any] | None = None,
) -> Any:
    """A synchronous client for producers and admin commands.

    A few quick retries ride out a failover or a restart of a second or less; past that the caller
    gets a BrokerConnectionError instead of hanging. The pool is bounded (threads wait for a
    connection) so that a worker running many threads still holds a fixed number of connections.
    """
    options: dict[str, Any] = dict(
        socket_connect_timeout=socket_timeout_s,
        socket_timeout=socket_timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=30,
    )
    if kind_of(url) != "single":
        return _multi_node_sync(url, options, max_connections or 8, _options_for(url, transport_options))
    options.update(_driver_info())
    if max_connections is None:
        return redis.Redis.from_url(url, **options)
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=socket_timeout_s, **options
    )
    return redis.Redis.from_pool(pool)  # the client owns the pool: close() disconnects it


def async_client(
    url: str,
    *,
    max_connections: int,
    socket_timeout_s: float | None = 10.0,
    transport_options: Mapping[str, Any] | None = None,
) -> Any:
    """An asyncio client whose pool holds at most ``max_connections`` connections (callers wait)
    (per node on a Redis Cluster)."""
    if kind_of(url) != "single":
        return _multi_node_async(url, max_connections, socket_timeout_s, _options_for(url, transport_options))
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=None,
        socket_connect_timeout=5.0,
        socket_timeout=socket_timeout_s,
        health_check_interval=30,
        **_driver_info(),
    )
    return redis.asyncio.Redis.from_pool(pool)  # the client owns the pool: aclose() disconnects it


def endpoint(url: str, transport_options: Mapping[str, Any] | None = None) -> Endpoint:
    """The parsed cluster or Sentinel URL (a BrokerError naming the problem when it does not parse)."""
    try:
        return parse(url, transport_options)
    except ValueError as exc:
        raise BrokerError(f"{redact(url)}: {exc}") from None


def _auth(ep: Endpoint) -> dict[str, Any]:
    auth: dict[str, Any] = {}
    if ep.username:
        auth["username"] = ep.username
    if ep.password:
        auth["password"] = ep.password
    return auth


def _multi_node_sync(
    url: str, options: dict[str, Any], max_connections: int, transport_options: Mapping[str, Any] | None
) -> Any:
    ep = endpoint(url, transport_options)
    if ep.kind == "cluster":
        from redis.cluster import RedisCluster

        ClusterNode: Any = redis.cluster.ClusterNode

        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in ep.nodes],
            ssl=ep.tls,
            max_connections=max_connections,
            # per node: callers wait for a free connection instead of failing "Too many connections"
            connection_pool_class=redis.BlockingConnectionPool,
            socket_connect_timeout=options["socket_connect_timeout"],
            socket_timeout=options["socket_timeout"],
            # MOVED/ASK and a failover (connection errors, CLUSTERDOWN) are retried with a fresh slot map
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 6),
            **_auth(ep),
        )
    from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

    class MasterConnection(SentinelManagedConnection):
        """Asks the Sentinels for the master on every (re)connect. redis-py 8 reconnects a dropped
        connection through ``connect_check_health``, which skips the Sentinel lookup and would
        connect to the default localhost:6379 instead of the master."""

        def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            if not self._sock:
                self.host, self.port = self.connection_pool.get_master_address()
            super().connect_check_health(*args, **kwargs)

    class BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
        """Callers wait for a connection (bounded pool) instead of failing with "Too many connections"."""

    sentinel: Any = _untyped(Sentinel)(
        list(ep.nodes),
        sentinel_kwargs={"socket_timeout": options["socket_timeout"], **ep.sentinel_kwargs},
        socket_timeout=options["socket_timeout"],
    )
    assert ep.master_name is not None
    pool: Any = _untyped(BlockingSentinelPool)(
        ep.master_name,
        sentinel,
        db=ep.db,
        ssl=ep.tls,
        timeout=options["socket_timeout"],
        connection_class=MasterConnection,
        # a failover takes seconds: retry sends over a longer window than on one server
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 10),
        retry_on_error=options["retry_on_error"],
        socket_connect_timeout=options["socket_connect_timeout"],
        socket_timeout=options["socket_timeout"],
        max_connections=max_connections,
        **_auth(ep),
    )
    client = _SentinelRedis(
        connection_pool=pool,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 10),
        retry_on_error=options["retry_on_error"],
    )
    client.auto_close_connection_pool = True  # the client owns its pool: close() disconnects it
    return client


def _multi_node_async(
    url: str,
    max_connections: int,
    socket_timeout_s: float | None,
    transport_options: Mapping[str, Any] | None,
) -> Any:
    ep = endpoint(url, transport_options)
    if ep.kind == "cluster":
        from redis.asyncio.retry import Retry as AsyncRetry

        ClusterNode: Any = redis.asyncio.cluster.ClusterNode

        return _waiting_cluster_class()(
            startup_nodes=[ClusterNode(h, p) for h, p in ep.nodes],
            ssl=ep.tls,
            max_connections=max_connections,
            socket_connect_timeout=5.0,
            socket_timeout=socket_timeout_s,
            retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 6),
            **_auth(ep),
        )
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

    class MasterConnection(SentinelManagedConnection):
        """Asks the Sentinels for the master on every (re)connect (see the sync client above)."""

        async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            if not self.is_connected:
                self.host, self.port = await self.connection_pool.get_master_address()
            await super().connect_check_health(*args, **kwargs)

    class BlockingSentinelPool(SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
        """Callers wait for a connection (bounded pool) instead of failing with "Too many connections"."""

    sentinel: Any = _untyped(Sentinel)(
        list(ep.nodes), sentinel_kwargs={"socket_timeout": 5.0, **ep.sentinel_kwargs}, socket_timeout=5.0
    )
    assert ep.master_name is not None
    pool: Any = _untyped(BlockingSentinelPool)(
        ep.master_name,
        sentinel,
        db=ep.db,
        ssl=ep.tls,
        timeout=None,
        connection_class=MasterConnection,
        socket_connect_timeout=5.0,
        socket_timeout=socket_timeout_s,
        max_connections=max_connections,
        **_auth(ep),
    )
    client = _AsyncSentinelRedis(
        connection_pool=pool,
        retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.1), 10),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    client.auto_close_connection_pool = True  # the client owns its pool: aclose() disconnects it
    return client


class _SentinelRedis(redis.Redis):
    """A client behind Sentinel whose ``close()`` also closes its connections to the Sentinels
    (redis-py's leaves them to the garbage collector), whoever made it and closes it."""

    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.close()


class _AsyncSentinelRedis(redis.asyncio.Redis):
    """The asyncio :class:`_SentinelRedis`."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()


def translate_error(exc: Exception, url: str) -> BrokerError:
    """The celeriac error for a redis-py (or socket) error, password-free."""
    text = redact(str(exc))
    if isinstance(exc, redis.AuthenticationError) or text.startswith(("WRONGPASS", "NOAUTH")):
        # not a connection problem: waiting or retrying cannot fix wrong credentials
        if not has_password(url):  # Redis's own text ("HELLO must be called ...") does not say it
            return BrokerError(
                f"Redis at {redact(url)} requires authentication and the URL has no password: put it "
                "in the URL, redis://:<password>@host:port/db (or redis://<user>:<password>@host:port/db "
                "for an ACL user), percent-encoding special characters"
            )
        return BrokerError(
            f"Redis at {redact(url)} refused the credentials (wrong password, or unknown or disabled "
            f"ACL user): {text}"
        )
    if isinstance(exc, redis.exceptions.NoPermissionError) or text.startswith("NOPERM") or " NOPERM " in text:
        prefix = "" if "NOPERM" in text else "NOPERM "
        return BrokerError(
            f"Redis at {redact(url)} denied a command to this ACL user ({prefix}{text}); "
            "see the minimal ACL in the README (Security)"
        )
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return BrokerConnectionError(f"Redis at {redact(url)} unreachable: {text}")
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        isinstance(exc, redis.ResponseError) and (text.startswith("OOM") or "maxmemory" in text)
    ):
        return BrokerFullError(f"Redis at {redact(url)} is out of memory (maxmemory reached): {text}")
    return BrokerError(f"Redis at {redact(url)} failed: {text}")


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Re-raise redis-py errors as celeriac BrokerError subclasses (password-free)."""
    try:
        yield
    except redis.RedisError as exc:
        raise translate_error(exc, url) from None
    except OSError as exc:
        raise translate_error(exc, url) from None


def to_str(value: Any) -> str:
    """Text of a Redis reply value. Lenient: anyone who can write to Redis can put bytes that are not
    UTF-8 in a field we read (a reason, a heartbeat), and listing them must not raise."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def open_connections(client: Any) -> int:
    """How many connected sockets a redis-py client holds (one server, Sentinel or cluster), for the
    worker's heartbeat. Reads the pools' bookkeeping; 0 for a client that is None."""
    if client is None:
        return 0
    pools: list[Any] = []
    manager = getattr(client, "nodes_manager", None)
    if manager is not None:  # a cluster client: a pool (sync) or a connection list (asyncio) per node
        for node in list(manager.nodes_cache.values()):
            direct = getattr(node, "_connections", None)
            if direct is not None:
                pools.append(node)
            elif getattr(node, "redis_connection", None) is not None:
                pools.append(node.redis_connection.connection_pool)
    else:
        pools.append(getattr(client, "connection_pool", client))
    total = 0
    for pool in pools:
        try:  # other threads use the pool meanwhile: a set that changes size is counted next time
            conns = [
                *list(getattr(pool, "_connections", None) or []),
                *list(getattr(pool, "_available_connections", None) or []),
                *list(getattr(pool, "_in_use_connections", None) or []),
            ]
        except RuntimeError:
            continue
        total += len({id(c) for c in conns if c is not None and _connected(c)})
    return total


def _connected(conn: Any) -> bool:
    if hasattr(conn, "is_connected"):
        return bool(conn.is_connected)
    return getattr(conn, "_sock", None) is not None


def close_client(client: Any) -> None:
    """Close a sync client and, behind Sentinel, its connections to the Sentinels too (redis-py's
    ``close()`` leaves those open)."""
    client.close()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        sentinel.close()


async def aclose_client(client: Any) -> None:
    """Close an asyncio client and, behind Sentinel, its connections to the Sentinels too."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


_WAITING_CLUSTER: Any = None
_PUBSUB_ROOM = 2  # node connections a cluster client may hold outside its command permits


def _waiting_cluster_class() -> Any:
    """redis-py's asyncio ``RedisCluster``, except that callers wait for a free connection.

    Its node pools raise ``MaxConnectionsError`` at once when every connection of a node is busy
    (the sync client and the one-server pools wait), which a worker running many tasks that settle,
    dispatch workflows and renew leases at once would see as "Redis unreachable". Every command and
    pipeline holds one of ``max_connections`` permits while it runs, and uses at most one connection
    per node meanwhile, so no node pool (``max_connections`` plus room for a pub/sub subscription) is
    ever exhausted.
    """
    global _WAITING_CLUSTER
    if _WAITING_CLUSTER is not None:
        return _WAITING_CLUSTER
    import asyncio
    import contextvars

    from redis.asyncio.cluster import ClusterPipeline, RedisCluster

    # set while a task holds a permit: a pipeline re-sends a MOVED command through execute_command,
    # which must not wait for a second permit (every permit held that way would deadlock)
    holding = contextvars.ContextVar("celeriac_cluster_permit", default=False)

    async def with_permit(permits: asyncio.Semaphore, run: Any) -> Any:
        if holding.get():
            return await run()
        async with permits:
            token = holding.set(True)
            try:
                return await run()
            finally:
                holding.reset(token)

    class WaitingPipeline(ClusterPipeline):
        async def execute(self, *args: Any, **kwargs: Any) -> Any:
            run = super().execute
            return await with_permit(self.cluster_client._permits, lambda: run(*args, **kwargs))  # type: ignore[attr-defined]

    class WaitingCluster(RedisCluster):
        def __init__(self, *, max_connections: int, **kwargs: Any) -> None:
            # the node pools have room beyond the permits for connections held outside commands (the
            # pub/sub wake-up subscription holds one for as long as it listens)
            super().__init__(max_connections=max_connections + _PUBSUB_ROOM, **kwargs)
            self._permits = asyncio.Semaphore(max_connections)

        async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            run = super().execute_command
            return await with_permit(self._permits, lambda: run(*args, **kwargs))

        def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
            if shard_hint:
                raise redis.exceptions.RedisClusterException("shard_hint is not supported on a cluster")
            return WaitingPipeline(self, transaction=bool(transaction))  # type: ignore[abstract]

    _WAITING_CLUSTER = WaitingCluster
    return WaitingCluster
