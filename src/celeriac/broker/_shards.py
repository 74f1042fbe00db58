"""Shard names of a sharded queue, and the shards an earlier ``queue_shards`` setting left behind.

A queue spread over ``n`` shards (``queue_shards``) is the queue's own stream plus ``n - 1`` streams
named ``queue~k.s``. Their names depend on ``n``: change the setting (8 shards to 4, or sharding
turned off) and the tasks still waiting in the old shards' streams would be consumed by nobody, since
every worker reads only the names it computes. So a worker looks for such streams when it opens its
queues (:func:`leftover_shards`) and consumes them with the queue's current shards; sends never go
there. To know where to look, every setting a queue was sharded with is recorded in a small set in
the queue's hash slot (:meth:`KeySchema.shardings`: a producer adds its ``n`` at its first send to the
queue, a worker when it opens it), so the look-up is one ``SMEMBERS`` and an ``XLEN`` and a ``ZCARD``
per earlier shard name: no walk of the keyspace, never on the task path.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .._redis.keys import KeySchema


def shard_names(queue: str, n: int) -> list[str]:
    """The stream names of a queue spread over ``n`` shards: the queue itself, then ``queue~k.s``.

    Cut the slot space into ``n`` even ranges: shard 0 (the queue itself, so that an unsharded worker
    still serves it) lies in one of them wherever its name hashes, and shards 1..n-1 take the others in
    order, each with the smallest salt ``s`` that puts its hash slot there. So the shards spread evenly
    over a cluster's masters (which own contiguous, even slot ranges) instead of landing where their
    names happen to hash: with 3 shards on 3 masters, one per master. Deterministic: every producer
    and worker computes the same names.
    """
    return list(cached_shard_names(queue, n))


@functools.lru_cache(maxsize=1024)
def cached_shard_names(queue: str, n: int) -> tuple[str, ...]:
    """:func:`shard_names`, computed once per (queue, n): a send to a sharded queue picks one of them,
    and finding a salt costs a few CRC16s per shard."""
    names = [queue]
    home = key_slot(queue.encode()) * n // REDIS_CLUSTER_HASH_SLOTS  # the range shard 0 lies in
    for k, part in enumerate((p for p in range(n) if p != home), start=1):
        low, high = part * REDIS_CLUSTER_HASH_SLOTS // n, (part + 1) * REDIS_CLUSTER_HASH_SLOTS // n
        for salt in range(100_000):
            name = f"{queue}~{k}.{salt}"
            if low <= key_slot(name.encode()) < high:
                break
        names.append(name)
    return tuple(names)


def earlier_shard_names(queue: str, counts: Iterable[Any], current: Sequence[str]) -> list[str]:
    """The shard names of ``queue`` under each earlier setting in ``counts`` (the numbers of shards
    recorded in :meth:`KeySchema.shardings`), without those in ``current``; in setting order."""
    seen = set(current)
    out: list[str] = []
    for n in sorted({int(c) for c in counts}):
        for name in cached_shard_names(queue, n):
            if name not in seen:
                seen.add(name)
                out.append(name)
    return out


def leftover_shards(client: Any, keys: KeySchema, names: Sequence[str]) -> list[tuple[str, int]]:
    """Of the shard streams ``names``, those that still hold tasks: ``(shard name, waiting + running
    + delayed tasks)`` for each, in the order given. ``client`` is a synchronous redis-py client
    (``Redis`` or ``RedisCluster``). An empty stream is skipped (and left alone: it is a few bytes)."""
    found: list[tuple[str, int]] = []
    for name in names:
        q = keys.queue(name)
        tasks = int(client.xlen(q.ready)) + int(client.zcard(q.delayed))
        if tasks:  # acked entries are deleted: an empty stream has nothing waiting or running
            found.append((name, tasks))
    return found
