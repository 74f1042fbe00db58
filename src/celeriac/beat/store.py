"""Where periodic entries live in Redis, and the scripts that change them.

=========================================  ==========  ============================================
key                                        type        bound / expiry
=========================================  ==========  ============================================
``<prefix>:beat:entries``                  hash        entry name -> definition (msgpack); one field
                                                       per entry, removed with the entry
``<prefix>:beat:rev``                      string      an integer bumped on every change
``<prefix>:{<queue>}:beat``                hash        per entry of that queue: active digest, last
                                                       claimed slots, last enqueued run (see
                                                       ``_redis/lua/beat_claim.lua``); removed with the entry
=========================================  ==========  ============================================

The per-entry state sits in the hash slot of the entry's queue, so that claiming a slot and enqueuing
its run into that queue's delayed set is one script on one slot (Redis Cluster). The registry is read
and written with single-key commands only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .._redis.keys import KeySchema
from .._redis.scripts import Script


@cache
def _script(name: str) -> Script:
    return Script.named(name)  # the .lua files live with the others in celeriac/_redis/lua


def claim_script() -> Script:
    return _script("beat_claim")


def register_script() -> Script:
    return _script("beat_register")


def poll_script() -> Script:
    return _script("beat_poll")


@dataclass(frozen=True)
class BeatKeys:
    """Key names of the periodic entries under one prefix."""

    schema: KeySchema

    @property
    def entries(self) -> str:
        return f"{self.schema.prefix}:beat:entries"

    @property
    def rev(self) -> str:
        return f"{self.schema.prefix}:beat:rev"

    def state(self, queue: str) -> str:
        return f"{self.schema.prefix}:{{{queue}}}:beat"

    def delayed(self, queue: str) -> str:
        return self.schema.queue(queue).delayed

    def wake(self, queue: str) -> str:
        return self.schema.queue(queue).wake
