"""Redis keys of flow control (see ``celeriac/_redis/lua/`` for each script's use).

==============================================  ==========  =====================================
key                                             type        bound / expiry
==============================================  ==========  =====================================
``<prefix>:flow``                               hash        ``rate:<task>`` -> rate set at run time,
                                                            ``paused:<queue>`` -> 1 (one field per
                                                            task changed or queue paused)
``<prefix>:{<queue>}:rl:<task>[:<key>]``        string      GCRA time; TTL: idle after one interval
``<prefix>:{<queue>}:rs:<task>[:<key>]``        string      how far the line slipped (us); TTL 1 h
                                                            past the last change
``<prefix>:{<queue>}:rt:<task>[:<key>]``        sorted set  turns handed out, not started (the line);
                                                            bounded by the waiting tasks; TTL 1 h
``<prefix>:{<queue>}:cl:<task>[:<key>]``        sorted set  holders, at most the limit; TTL 2 leases
``<prefix>:{<queue>}:cl:<task>[:<key>]:wait``   list        parked messages (tasks, like the stream)
``<prefix>:{<queue>}:cl:index``                 set         limiters with parked messages
==============================================  ==========  =====================================
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .._redis.scripts import Script


@cache
def script(name: str) -> Script:
    """One of flow control's Lua scripts (in celeriac/_redis/lua, with the others)."""
    return Script.named(name)


@dataclass(frozen=True)
class FlowKeys:
    prefix: str

    @property
    def config(self) -> str:
        return f"{self.prefix}:flow"

    def rate(self, queue: str, name: str) -> str:
        return f"{self.prefix}:{{{queue}}}:rl:{name}"

    def shift(self, queue: str, name: str) -> str:
        return f"{self.prefix}:{{{queue}}}:rs:{name}"

    def turns(self, queue: str, name: str) -> str:
        return f"{self.prefix}:{{{queue}}}:rt:{name}"

    def holders(self, queue: str, name: str) -> str:
        return f"{self.prefix}:{{{queue}}}:cl:{name}"

    def waiting(self, queue: str, name: str) -> str:
        return f"{self.prefix}:{{{queue}}}:cl:{name}:wait"

    def index(self, queue: str) -> str:
        return f"{self.prefix}:{{{queue}}}:cl:index"
