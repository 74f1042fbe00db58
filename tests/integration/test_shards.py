"""A queue sharded over several streams on a single Redis: sends spread round robin, fetches take
every shard in turn, order holds per shard, and admin commands cover all shards."""

from __future__ import annotations

import pytest

from celeriac.broker.base import Enqueue, Settlement
from celeriac.broker.redis import RedisBroker, shard_names

pytestmark = pytest.mark.redis


async def test_sends_spread_and_fetches_take_every_shard_in_turn(redis_url: str) -> None:
    broker = RedisBroker(redis_url, queue_shards={"hot": 4}).for_worker()
    await broker.open(["hot"])
    for i in range(40):
        broker.enqueue(Enqueue("hot", f"m{i}".encode()))
    assert [broker._stats(s).ready for s in broker.shards("hot")] == [10, 10, 10, 10]
    assert broker.stats("hot").ready == 40
    got = []
    for _ in range(8):  # small fetches: each starts at the next shard
        got += await broker.fetch(["hot"], "c1", 1, 0)
    shards_seen = {d.entry_id.partition("@")[2] for d in got}
    assert len(shards_seen) == 4, "every shard served within a few fetches"
    rest = await broker.fetch(["hot"], "c1", 100, 0)
    everything = got + rest
    assert sorted(d.data for d in everything) == sorted(f"m{i}".encode() for i in range(40))
    for suffix in {d.entry_id.partition("@")[2] for d in everything}:  # order holds per shard
        numbers = [int(d.data[1:]) for d in everything if d.entry_id.partition("@")[2] == suffix]
        assert numbers == sorted(numbers)
    fenced = await broker.settle("c1", [Settlement(d, "ack") for d in everything])
    assert fenced == []
    assert broker.stats("hot").running == 0
    await broker.close()
    broker.close_sync()


SHARDS = 3


async def test_dead_letters_replay_and_purge_cover_every_shard(redis_url: str) -> None:
    broker = RedisBroker(redis_url, queue_shards={"hot": SHARDS}).for_worker()
    await broker.open(["hot"])
    broker.enqueue_many([Enqueue("hot", f"m{i}".encode()) for i in range(6)])
    got = await broker.fetch(["hot"], "c1", 6, 0)
    assert len(got) == 6
    await broker.settle("c1", [Settlement(d, "dead", data=d.data, reason="bad") for d in got])
    letters = broker.dead_letters("hot", 100)
    assert len(letters) == 6 and broker.stats("hot").dead == 6
    one = next((x for x in letters if "@" in x.entry_id), letters[0])
    assert broker.replay_dead("hot", 1, one.entry_id) == 1
    assert broker.replay_dead("hot", 100) == 5
    assert broker.stats("hot").ready == 6
    assert broker.purge("hot") == 6
    # (not stats().ready: on Redis 7.0 the group's lag still counts purged entries, sharded or not)
    assert await broker.fetch(["hot"], "c1", 100, 0) == []
    await broker.close()
    broker.close_sync()


def test_shard_names_spread_over_the_slot_space() -> None:
    from redis.crc import key_slot

    names = shard_names("default", 8)
    assert names[0] == "default"  # shard 0 is the queue itself: an unsharded worker still serves it
    for k, name in enumerate(names[1:], start=1):
        assert k * 2048 <= key_slot(name.encode()) < (k + 1) * 2048
    assert shard_names("default", 8) == names  # deterministic
