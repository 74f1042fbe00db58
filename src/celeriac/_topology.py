"""Which Redis a URL names: one server, a Redis Cluster, or a master watched by Sentinels.

``redis://`` / ``rediss://`` / ``unix://``: one server. ``redis+cluster://h1:p1,h2:p2`` (and
``rediss+cluster://``): a Redis Cluster reached through any of the listed startup nodes.
``sentinel://h1:p1;sentinel://h2:p2`` (Celery's form, with ``master_name`` in the transport options)
or the compact ``redis+sentinel://h1:p1,h2:p2/<master name>/<db>``: the master that the Sentinels
name, followed through failovers. Pure parsing, no redis-py import: the configuration checks URLs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("sentinel", "redis+sentinel", "rediss+sentinel")


@dataclass(frozen=True)
class Endpoint:
    """A parsed multi-node URL."""

    kind: str  # "cluster" or "sentinel"
    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0
    master_name: str | None = None
    #: options for the connections to Sentinels themselves (Celery's ``sentinel_kwargs``, a password)
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict)


def kind_of(url: str) -> str:
    """``"cluster"``, ``"sentinel"`` or ``"single"``."""
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES:
        return "cluster"
    if scheme in SENTINEL_SCHEMES:
        return "sentinel"
    return "single"


def _hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    out = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep:
            host, port = port, str(default_port)
        if not port.isdigit():
            raise ValueError(f"port must be a number in {part!r}")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    if not out:
        raise ValueError("no host")
    return tuple(out)


#: the keys of Celery's ``broker_transport_options`` that say how to connect (the others, such as
#: ``visibility_timeout``, are settings of their own: see celeriac.celery_settings)
CONNECTION_OPTIONS = ("master_name", "sentinel_kwargs")


def connection_options(transport_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The connection options among ``transport_options`` (Sentinel's ``master_name`` and
    ``sentinel_kwargs``), so that two clients of one Redis compare equal whatever else is set."""
    return {k: v for k, v in (transport_options or {}).items() if k in CONNECTION_OPTIONS}


def parse(url: str, transport_options: Mapping[str, Any] | None = None) -> Endpoint:
    """The endpoint of a cluster or Sentinel URL. Raises ValueError with what is wrong."""
    options = dict(transport_options or {})
    kind = kind_of(url)
    if kind == "single":
        raise ValueError("not a cluster or sentinel URL")
    if kind == "sentinel" and url.lower().startswith("sentinel://"):
        # Celery's form: "sentinel://[:pw@]h1:p1[/db];sentinel://h2:p2;..." with master_name in options
        nodes: list[tuple[str, int]] = []
        password = username = None
        db = 0
        for part in url.split(";"):
            part = part.strip()
            if not part:
                continue
            if not part.lower().startswith("sentinel://"):
                raise ValueError(f"every part of a Sentinel URL list starts with sentinel://, not {part!r}")
            parts = urlsplit(part)
            nodes += _hosts(parts.netloc.rpartition("@")[2], 26379)
            password = unquote(parts.password) if parts.password else password
            username = unquote(parts.username) if parts.username else username
            if parts.path.strip("/").isdigit():
                db = int(parts.path.strip("/"))
        master = options.get("master_name")
        if not master:
            raise ValueError(
                "a sentinel:// URL needs the master's name: "
                "broker_transport_options={'master_name': 'mymaster'} "
                "(or use redis+sentinel://h1:26379,h2:26379/mymaster/0)"
            )
        return Endpoint(
            "sentinel",
            tuple(nodes),
            tls=False,
            username=username,
            password=password,
            db=db,
            master_name=str(master),
            sentinel_kwargs=dict(options.get("sentinel_kwargs") or {}),
        )
    scheme, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    tail, _, query = tail.partition("?")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    qs = {k: v[-1] for k, v in parse_qs(query).items()}
    password = qs.get("password", password)
    username = qs.get("username", username)
    tls = scheme.lower().startswith("rediss")
    if kind == "cluster":
        if tail.strip("/") not in ("", "0"):
            raise ValueError("a Redis Cluster has database 0 only")
        return Endpoint("cluster", _hosts(hostlist, 6379), tls=tls, username=username, password=password)
    segments = [s for s in tail.split("/") if s]
    master = segments[0] if segments else options.get("master_name")
    if not master:
        raise ValueError("name the master: redis+sentinel://h1:26379,h2:26379/<master name>/<db>")
    db_text = segments[1] if len(segments) > 1 else qs.get("db", "0")
    if not db_text.isdigit():
        raise ValueError(f"database must be a number, got {db_text!r}")
    return Endpoint(
        "sentinel",
        _hosts(hostlist, 26379),
        tls=tls,
        username=username,
        password=password,
        db=int(db_text),
        master_name=str(master),
        sentinel_kwargs=dict(options.get("sentinel_kwargs") or {}),
    )
