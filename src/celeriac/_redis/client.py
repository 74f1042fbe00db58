"""Redis client construction and error translation shared by the broker and the result backend.

redis-py (with hiredis when installed) does the protocol work; this module only chooses timeouts and
retries and turns redis-py's exceptions into celeriac's tree, with passwords removed from messages.
URL checks and redaction live in ``_urls.py`` (no redis-py import) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .._urls import has_password, redact
from ..exceptions import BrokerConnectionError, BrokerError, BrokerFullError


def sync_client(
    url: str, *, socket_timeout_s: float = 5.0, retries: int = 2, max_connections: int | None = 8
) -> redis.Redis:
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
    if max_connections is None:
        return redis.Redis.from_url(url, **options)
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=socket_timeout_s, **options
    )
    return redis.Redis.from_pool(pool)  # the client owns the pool: close() disconnects it


def async_client(
    url: str, *, max_connections: int, socket_timeout_s: float | None = 10.0
) -> redis.asyncio.Redis:
    """An asyncio client whose pool holds at most ``max_connections`` connections (callers wait)."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=None,
        socket_connect_timeout=5.0,
        socket_timeout=socket_timeout_s,
        health_check_interval=30,
    )
    return redis.asyncio.Redis.from_pool(pool)  # the client owns the pool: aclose() disconnects it


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
