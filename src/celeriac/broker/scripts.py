"""Loads the Lua scripts in ``lua/`` (one operation per file) and registers them with a client.

redis-py's ``Script`` objects call ``EVALSHA`` and fall back to ``SCRIPT LOAD`` on ``NOSCRIPT``, so a
Redis restart or failover that flushed the script cache needs no handling here.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any


@cache
def source(name: str) -> str:
    """The Lua source of one script."""
    return resources.files("celeriac.broker").joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")


class Scripts:
    """The scripts registered on one client (sync or asyncio), one attribute per ``lua/*.lua`` file."""

    def __init__(self, client: Any) -> None:
        self.enqueue_delayed = client.register_script(source("enqueue_delayed"))
        self.promote = client.register_script(source("promote"))
        self.settle = client.register_script(source("settle"))
        self.extend = client.register_script(source("extend"))
        self.reclaim = client.register_script(source("reclaim"))
        self.release = client.register_script(source("release"))
        self.replay_dead = client.register_script(source("replay_dead"))
        self.purge_ready = client.register_script(source("purge_ready"))
        self.store_result = client.register_script(source("store_result"))
