"""Redis client construction and error translation shared by the broker and the result backend.

redis-py (with hiredis when installed) does the protocol work; this module only chooses timeouts and
retries and turns redis-py's exceptions into celeriac's tree, with passwords removed from messages.
URL checks and redaction live in ``_urls.py`` (no redis-py import) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .._topology import Endpoint, kind_of, parse
from .._urls import has_password, redact
from ..exceptions import BrokerConnectionError, BrokerError, BrokerFullError


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
        return _multi_node_sync(url, options, max_connections or 8, transport_options)
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
        return _multi_node_async(url, max_connections, socket_timeout_s, transport_options)
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=None,
        socket_connect_timeout=5.0,
        socket_timeout=socket_timeout_s,
        health_check_interval=30,
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

    sentinel: Any = Sentinel(  # type: ignore[no-untyped-call]
        list(ep.nodes),
        sentinel_kwargs={"socket_timeout": options["socket_timeout"], **ep.sentinel_kwargs},
        socket_timeout=options["socket_timeout"],
    )
    assert ep.master_name is not None
    pool: Any = BlockingSentinelPool(  # type: ignore[no-untyped-call]
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
    return redis.Redis(
        connection_pool=pool,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 10),
        retry_on_error=options["retry_on_error"],
    )


def _multi_node_async(
    url: str,
    max_connections: int,
    socket_timeout_s: float | None,
    transport_options: Mapping[str, Any] | None,
) -> Any:
    ep = endpoint(url, transport_options)
    if ep.kind == "cluster":
        from redis.asyncio.cluster import RedisCluster
        from redis.asyncio.retry import Retry as AsyncRetry

        ClusterNode: Any = redis.asyncio.cluster.ClusterNode

        return RedisCluster(
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

    sentinel: Any = Sentinel(  # type: ignore[no-untyped-call]
        list(ep.nodes), sentinel_kwargs={"socket_timeout": 5.0, **ep.sentinel_kwargs}, socket_timeout=5.0
    )
    assert ep.master_name is not None
    pool: Any = BlockingSentinelPool(  # type: ignore[no-untyped-call]
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
    return redis.asyncio.Redis(
        connection_pool=pool,
        retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.1), 10),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


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
