"""How settle.lua keeps a queue's stream small and cheap on real Redis.

Acked entries leave the stream: in whole nodes (XTRIM MINID) when they are older than every running
message, one by one (XDEL) when acked out of order. A consumer's plain acks skip the pending-list check
until a reclaim or a release took a delivery from it (the ``reclaimed`` hash); from then on, its late
outcomes are fenced as before.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from celeriac._redis.keys import GROUP
from celeriac.broker.base import Enqueue, Settlement
from celeriac.broker.redis import RedisBroker
from celeriac.testing import RedisServer

pytestmark = pytest.mark.redis
Q = "hk"


@pytest.fixture
def env(fresh_redis: RedisServer) -> Iterator[tuple[RedisBroker, redis.Redis]]:
    broker = RedisBroker(fresh_redis.url)
    client = redis.Redis.from_url(fresh_redis.url)
    yield broker, client
    broker.close_sync()
    client.close()


async def test_acks_with_nothing_running_leave_only_waiting_entries(
    env: tuple[RedisBroker, redis.Redis],
) -> None:
    broker, client = env
    await broker.open([Q])
    broker.enqueue_many([Enqueue(Q, f"m{i}".encode()) for i in range(500)])
    ready = broker.keys.queue(Q).ready
    for _ in range(3):  # 300 taken and acked, in batches, each with nothing else running
        got = await broker.fetch([Q], "c1", 100, 0)
        assert await broker.settle("c1", [Settlement(d) for d in got]) == []
    assert client.xlen(ready) == 200  # exact: the acked entries are gone, not merely trimmed to a node
    s = broker.stats(Q)
    assert (s.ready, s.running) == (200, 0)
    await broker.close()


async def test_acks_behind_a_running_message_are_deleted_one_by_one(
    env: tuple[RedisBroker, redis.Redis],
) -> None:
    broker, client = env
    await broker.open([Q])
    broker.enqueue_many([Enqueue(Q, f"m{i}".encode()) for i in range(300)])
    ready = broker.keys.queue(Q).ready
    (long,) = await broker.fetch([Q], "c1", 1, 0)  # the oldest entry keeps running
    got = await broker.fetch([Q], "c1", 150, 0)
    assert await broker.settle("c1", [Settlement(d) for d in got]) == []
    # nothing older than the running message could be trimmed, so the 150 acked went by XDEL
    assert client.xlen(ready) == 300 - 150
    s = broker.stats(Q)
    assert (s.ready, s.running) == (149, 1)
    assert await broker.settle("c1", [Settlement(long)]) == []
    assert client.xlen(ready) == 149
    await broker.close()


async def test_acks_older_than_the_oldest_running_message_are_trimmed(
    env: tuple[RedisBroker, redis.Redis],
) -> None:
    broker, client = env
    await broker.open([Q])
    broker.enqueue_many([Enqueue(Q, f"m{i}".encode()) for i in range(1_000)])
    ready = broker.keys.queue(Q).ready
    early = await broker.fetch([Q], "c1", 500, 0)
    late = await broker.fetch([Q], "c1", 1, 0)  # still running: entries before it may be trimmed
    assert await broker.settle("c1", [Settlement(d) for d in early]) == []
    length = client.xlen(ready)
    # whole stream nodes (100 entries by default) went; at most one node of acked entries is left
    assert 500 <= length <= 500 + 100
    s = broker.stats(Q)
    assert (s.ready, s.running) == (499, 1)  # the group's lag: exact, whatever the trim left
    assert await broker.settle("c1", [Settlement(late[0])]) == []
    assert client.xlen(ready) == 499
    await broker.close()


async def test_a_consumer_that_lost_a_delivery_is_fenced_and_forgotten_when_pruned(
    env: tuple[RedisBroker, redis.Redis],
) -> None:
    broker, client = env
    await broker.open([Q])
    keys = broker.keys.queue(Q)
    broker.enqueue_many([Enqueue(Q, b"a"), Enqueue(Q, b"b")])
    a, b = await broker.fetch([Q], "old", 2, 0)
    assert client.hgetall(keys.reclaimed) == {}  # never reclaimed from: plain acks skip the check
    taken, dead = await broker.reclaim(Q, "new", 10, 0, 5)  # lease 0 ms: both expired at once
    assert ([d.entry_id for d in taken], dead) == ([a.entry_id, b.entry_id], 0)
    assert client.hgetall(keys.reclaimed) == {b"old": b"2"}
    # the old consumer's late outcomes are refused; the new owner's land
    assert await broker.settle("old", [Settlement(a), Settlement(b)]) == [a, b]
    assert await broker.settle("new", [Settlement(d) for d in taken]) == []
    assert client.xpending(keys.ready, GROUP)["pending"] == 0
    assert await broker.prune_consumers(Q, 0, keep="new") == 1  # "old" owns nothing: removed
    assert client.hgetall(keys.reclaimed) == {}
    await broker.close()


async def test_late_acks_after_redis_lost_the_stream_never_trim_new_messages(
    env: tuple[RedisBroker, redis.Redis],
) -> None:
    broker, client = env
    await broker.open([Q])
    ready = broker.keys.queue(Q).ready
    broker.enqueue_many([Enqueue(Q, b"before")])
    (old,) = await broker.fetch([Q], "c1", 1, 0)
    client.flushall()  # Redis lost everything (restart without persistence, failover to an empty replica)
    await broker.fetch([Q], "c1", 1, 0)  # the worker recreates the group (NOGROUP)
    # messages sent since, with ids older than the lost one's (a new server whose clock is behind)
    for n in (1, 2, 3):
        client.xadd(ready, {"m": f"after{n}".encode()}, id=f"1-{n}")
    assert await broker.settle("c1", [Settlement(old)]) == []
    # the trim is bounded by what the new group delivered (nothing), not by the late ack's id
    assert client.xlen(ready) == 3
    got = await broker.fetch([Q], "c2", 10, 0)
    assert [d.data for d in got] == [b"after1", b"after2", b"after3"]
    await broker.close()


async def test_a_consumer_owning_more_than_a_thousand_deliveries_keeps_every_lease(
    env: tuple[RedisBroker, redis.Redis],
) -> None:
    producer, client = env
    broker = producer.for_worker(max_owned=1_600)  # a worker at -c 1500 says so (Worker does)
    await broker.open([Q])
    broker.enqueue_many([Enqueue(Q, f"m{i}".encode()) for i in range(1_500)])
    got = await broker.fetch([Q], "c1", 1_500, 0)
    assert len(got) == 1_500
    assert await broker.extend("c1", got) == []  # the 1,001st and later are renewed too
    client.hset(broker.keys.queue(Q).reclaimed, "c1", 1)  # force the checked settle path
    assert await broker.settle("c1", [Settlement(d) for d in got[-10:]]) == []
    assert await broker.release("c1", got[1_000:1_005], started=True) == 5
    await broker.close()
    broker.close_sync()
