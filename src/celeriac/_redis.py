"""Redis client construction and error translation shared by the broker and the result backend.

redis-py (with hiredis when installed) does the protocol work; this module only chooses timeouts and
retries and turns redis-py's exceptions into celeriac's tree, with passwords removed from messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .exceptions import BrokerConnectionError, BrokerError, BrokerFullError, ConfigurationError

_SCHEMES = ("redis", "rediss", "unix")


# userinfo of a URL: everything between "scheme://user:" and the LAST "@" of the same token, so that
# a password holding an unescaped "@", "/" or ":" is hidden whole (hiding too much is the safe side)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s]*):\S*@")
# query parameters that carry secrets (?password=..., ?ssl_password=...)
_SECRET_QUERY = re.compile(r"(?i)(?P<head>[?&][a-z_]*password=)[^&#\s'\"]*")


def redact(url: str) -> str:
    """``url`` (or any text holding URLs) with passwords replaced by ``***``: the password of the
    userinfo part and ``password``/``ssl_password`` query parameters. For logs, CLI output and errors."""
    return _SECRET_QUERY.sub(r"\g<head>***", _USERINFO.sub(r"\g<head>:***@", url))


# URL query options celeriac passes on to redis-py (others would reach the connection class as
# unexpected arguments, or override the timeouts celeriac's blocking reads depend on)
URL_OPTIONS = frozenset({"db", "username", "password", "client_name"})
TLS_URL_OPTIONS = frozenset(
    {
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "ssl_ciphers",
    }
)
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_CERT_REQS = ("none", "optional", "required")


def check_url(url: str, setting: str = "broker") -> None:
    """Raise ConfigurationError unless ``url`` is a Redis URL celeriac can use.

    Query options are limited to ``db``, ``username``, ``password``, ``client_name`` and, for
    ``rediss://``, the TLS options of :data:`TLS_URL_OPTIONS`; the files they name must exist.
    """
    shown = redact(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError(setting, f"not a valid URL: {shown!r}") from None
    try:
        _ = parts.port
    except ValueError:  # the error text may quote part of a password that holds a ":" or "/"
        raise ConfigurationError(
            setting,
            f"not a valid URL: {shown!r} (the port is not a number; percent-encode special "
            "characters of a password)",
        ) from None
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            setting,
            f"unsupported scheme in {shown!r}: use redis://, rediss:// or unix:// (or memory://)",
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigurationError(setting, f"no host in {shown!r}")
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigurationError(setting, f"database must be a number in {shown!r}")
    _check_query(parts.scheme, parse_qs(parts.query, keep_blank_values=True), shown, setting)


def _check_query(scheme: str, query: dict[str, list[str]], shown: str, setting: str) -> None:
    allowed = URL_OPTIONS | (TLS_URL_OPTIONS if scheme == "rediss" else frozenset())
    for name, values in query.items():
        if name not in allowed:
            hint = (
                " (TLS options need a rediss:// URL)"
                if name in TLS_URL_OPTIONS
                else f"; known: {', '.join(sorted(allowed))}"
            )
            raise ConfigurationError(setting, f"unknown URL option {name!r} in {shown!r}{hint}")
        value = values[-1]
        if name in _TLS_FILES and not os.path.isfile(value):
            raise ConfigurationError(setting, f"{name}: no such file {value!r}")
        if name == "ssl_ca_path" and not os.path.isdir(value):
            raise ConfigurationError(setting, f"ssl_ca_path: no such directory {value!r}")
        if name == "ssl_cert_reqs" and value.lower() not in _CERT_REQS:
            raise ConfigurationError(setting, f"ssl_cert_reqs must be one of {_CERT_REQS}, got {value!r}")
        if name == "ssl_check_hostname" and value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigurationError(setting, f"ssl_check_hostname must be true or false, got {value!r}")
        if name == "db" and not value.isdigit():
            raise ConfigurationError(setting, f"db must be a number in {shown!r}")


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
        return BrokerError(f"Redis at {redact(url)} refused the credentials: {text}")
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
    return value.decode() if isinstance(value, bytes) else str(value)
