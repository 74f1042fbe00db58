"""The monitoring Lua scripts, loaded like the broker's (called by SHA, loaded again on NOSCRIPT)."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from .._redis.scripts import Script


def _named(name: str) -> Script:
    text = resources.files("celeriac.monitor").joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")
    return Script(name, text, hashlib.sha1(text.encode()).hexdigest())


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a redis-py Redis Cluster client (its pipelines refuse scripts)."""
    return hasattr(client, "nodes_manager")


RECORD = _named("record")
FIND = _named("find")
SERIES = _named("series")
