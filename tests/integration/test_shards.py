"""A queue sharded over several streams on a single Redis: sends spread round robin, fetches take
every shard in turn, order holds per shard, admin commands cover all shards, and a changed
queue_shards setting strands no task."""

from __future__ import annotations

import pytest
import redis

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

    for queue in ("default", "emails", "q"):
        for n in (2, 3, 4, 8):
            names = shard_names(queue, n)
            assert names[0] == queue  # shard 0 is the queue itself: an unsharded worker still serves it
            # one shard in each n-th of the slot space (a 3-master cluster: one shard per master),
            # shard 0 where its name hashes and the others in the remaining parts
            parts = sorted(key_slot(name.encode()) * n // 16384 for name in names)
            assert parts == list(range(n)), (queue, n, names)
            assert shard_names(queue, n) == names  # deterministic


async def _drain(broker: RedisBroker, queue: str) -> list[bytes]:
    got = []
    while batch := await broker.fetch([queue], "c1", 100, 0):
        got += batch
        await broker.settle("c1", [Settlement(d, "ack") for d in batch])
    return [d.data for d in got]


@pytest.mark.parametrize("now", [2, 1], ids=["fewer-shards", "unsharded"])
async def test_a_changed_queue_shards_setting_strands_no_task(
    redis_url: str, now: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Tasks sent under queue_shards={"hot": 4} are all run by a worker started with fewer shards (or
    none): it finds the old shards' streams that still hold tasks and consumes them too."""
    before = RedisBroker(redis_url, queue_shards={"hot": 4})
    before.enqueue_many([Enqueue("hot", f"m{i}".encode()) for i in range(40)])
    before.enqueue(Enqueue("hot", b"later", eta_ms=1))  # a delayed one, due at once, in some shard
    before.close_sync()
    worker = RedisBroker(redis_url, queue_shards={"hot": now}).for_worker()
    await worker.open(["hot"])
    old = set(shard_names("hot", 4)) - set(shard_names("hot", now))
    assert old <= set(worker.shards("hot")), "the old shards are consumed"
    assert "earlier queue_shards setting" in caplog.text
    await worker.promote("hot")
    assert sorted(await _drain(worker, "hot")) == sorted([*(f"m{i}".encode() for i in range(40)), b"later"])
    # sends go to the current shards only
    for i in range(10):
        worker.enqueue(Enqueue("hot", f"n{i}".encode()))
    assert sum(worker._stats(s).ready for s in shard_names("hot", now)) == 10
    await worker.close()
    worker.close_sync()


async def test_the_earlier_settings_are_recorded_and_empty_old_shards_ignored(
    redis_url: str, r: redis.Redis
) -> None:
    """A producer records its setting at its first send (a worker at open), so the look-up reads that
    record rather than walking the keyspace: it finds the one old shard holding a task and ignores
    an emptied one."""
    old = RedisBroker(redis_url, queue_shards={"hot": 3})
    old_names = shard_names("hot", 3)
    old.enqueue_many([Enqueue("hot", b"a"), Enqueue("hot", b"b"), Enqueue("hot", b"c")])
    assert r.smembers(old.keys.shardings("hot")) == {b"3"}
    r.xtrim(old.keys.queue(old_names[2]).ready, maxlen=0)  # the stream exists, empty
    old.close_sync()
    worker = RedisBroker(redis_url, queue_shards={"hot": 2}).for_worker()
    await worker.open(["hot"])
    assert r.smembers(worker.keys.shardings("hot")) == {b"2", b"3"}
    assert worker.shards("hot") == [*shard_names("hot", 2), old_names[1]]
    assert sorted(await _drain(worker, "hot")) == [b"a", b"b"]  # (c was in the emptied shard)
    await worker.close()
    worker.close_sync()


def test_admin_commands_cover_200k_tasks_in_the_shards_of_an_earlier_setting(redis_url: str) -> None:
    """status and purge (and the dead-letter commands) see tasks wherever they wait: a setting lowered
    from 4 shards to none leaves 200,000 tasks in the old shards; status counts them, purge removes
    them all."""
    before = RedisBroker(redis_url, queue_shards={"hot": 4})
    for _ in range(10):
        before.enqueue_many([Enqueue("hot", b"x")] * 20_000)
    before.close_sync()
    admin = RedisBroker(redis_url)
    assert admin.stats("hot").ready == 200_000
    assert admin.purge("hot") == 200_000
    assert sum(admin._stats(s).ready for s in shard_names("hot", 4)) == 0
    admin.close_sync()
