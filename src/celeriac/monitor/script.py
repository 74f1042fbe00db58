"""The monitoring Lua scripts, loaded like the broker's (called by SHA, loaded again on NOSCRIPT)."""

from __future__ import annotations

from typing import Any

from .._redis.scripts import Script


def _named(name: str) -> Script:
    return Script.named(name, "celeriac.monitor")


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a redis-py Redis Cluster client (its pipelines refuse scripts)."""
    return hasattr(client, "nodes_manager")


RECORD = _named("record")
FIND = _named("find")
SERIES = _named("series")
