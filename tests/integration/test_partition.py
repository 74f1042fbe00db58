"""A network partition between a worker and Redis (celeriac.testing.TcpProxy): the cut-off worker's
tasks are taken over by another worker after the lease; when the link heals, the cut-off worker
neither acks nor overwrites the results of deliveries it no longer owns, and resumes work by itself
(reconnecting with backoff, no restart)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from celeriac import Celeriac
from celeriac._redis.keys import GROUP
from celeriac.broker import redis as redis_broker
from celeriac.broker.base import Enqueue
from celeriac.broker.redis import RedisBroker
from celeriac.exceptions import BrokerConnectionError
from celeriac.testing import TcpProxy

from .conftest import take

pytestmark = pytest.mark.redis
LEASE_S = 1.0
N = 3


@pytest.mark.parametrize("results", ["broker", "separate"])
def test_a_worker_cut_off_by_a_partition_neither_acks_nor_overwrites_and_resumes(
    results: str, redis_url: str, cli_worker: Any, r: redis.Redis, reliability: Any
) -> None:
    # results on the broker's Redis (through the proxy for worker A), or in another database that A
    # still reaches during the cut: the dangerous case, where only the ownership check stops it
    result_url = redis_url if results == "broker" else redis_url[:-1] + "1"
    store = {} if results == "broker" else {"CELERIAC_RESULT_BACKEND": result_url}
    env = {"CELERIAC_LEASE_S": str(LEASE_S), "ITEST_DIRECT_URL": redis_url, **store}
    producer = Celeriac("producer", broker=redis_url, result_backend=result_url)
    with TcpProxy.for_url(redis_url) as proxy:
        a = cli_worker("-P", "threads", "-c", str(N), CELERIAC_BROKER_URL=proxy.url, **env)
        tasks = [producer.send_task("itest.owner", args=(f"t{i}",)) for i in range(N)]
        pid_a = a.proc.pid
        assert {s.split(":")[1] for s in take(r, "test:started", N)} == {str(pid_a)}
        b = cli_worker("-c", str(N), **env)  # direct link; idle: A owns every task
        pid_b = b.proc.pid

        proxy.cut()
        cut_at = time.monotonic()
        assert {s.split(":")[1] for s in take(r, "test:started", N, timeout_s=20)} == {str(pid_b)}
        takeover_s = time.monotonic() - cut_at
        r.rpush(f"test:go:{pid_b}", *["go"] * N)
        assert [t.get(timeout=20) for t in tasks] == [pid_b] * N
        # A's runs finish during the cut: their outcomes (result: A's pid) wait in A
        r.rpush(f"test:go:{pid_a}", *["go"] * N)
        finished = take(r, "test:finished", 2 * N)
        assert sorted(s.split(":")[1] for s in finished) == sorted([str(pid_a)] * N + [str(pid_b)] * N)

        proxy.heal()
        healed_at = time.monotonic()
        a.wait_log("was lost before its outcome was recorded", count=N, timeout_s=40)
        fenced_s = time.monotonic() - healed_at
        assert a.proc.poll() is None  # alive, no restart
        assert [t.get(timeout=5) for t in tasks] == [pid_b] * N  # not overwritten by A
        results_client = redis.Redis.from_url(result_url)
        for t in tasks:  # one record each: B's
            assert results_client.llen(producer.backend.keys.result(t.id)) == 1  # type: ignore[attr-defined]
        results_client.close()
        keys = producer.broker.keys.queue("default")  # type: ignore[attr-defined]
        assert r.xpending(keys.ready, GROUP)["pending"] == 0
        assert (r.xlen(keys.ready), r.xlen(keys.dead)) == (0, 0)

        assert b.stop() == 0
        assert f"({N} processed)" in b.log  # B recorded the three outcomes
        assert b.log.count("reclaimed default") == N
        # A resumes by itself: with B gone, only A can run a new task
        resumed_at = time.monotonic()
        assert producer.send_task("itest.pid").get(timeout=30) == pid_a
        resume_s = time.monotonic() - resumed_at
        assert a.stop() == 0
        assert "(1 processed)" in a.log  # the fenced outcomes were not counted as recorded
        assert r.xpending(keys.ready, GROUP)["pending"] == 0
    producer.close()
    store_text = "results on the broker's Redis" if results == "broker" else "results in a separate store"
    reliability.record(
        f"Network partition (TcpProxy cut, blackhole) between a worker and Redis; {store_text}",
        "another worker takes the tasks over after the lease; after the heal the cut-off worker acks "
        "nothing and overwrites no result it no longer owns, and resumes without a restart",
        f"{N} tasks taken over by worker B {takeover_s:.1f} s after the cut (lease {LEASE_S:.0f} s); "
        f"worker A fenced {N} of {N} late outcomes {fenced_s:.1f} s after the heal; {N} results from B, "
        f"0 overwritten, 0 pending, 0 dead letters; A ran a new task {resume_s * 1000:.0f} ms after it was sent",
    )


async def test_a_blocking_fetch_across_a_partition_fails_instead_of_hanging(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blackholed link never answers: only a socket timeout ends a read on it. The blocking fetch's
    connection has one (the longest BLOCK plus a margin; shortened here), so the worker's fetch loop
    backs off and retries instead of hanging forever."""
    monkeypatch.setattr(redis_broker, "_MAX_BLOCK_MS", 200)
    monkeypatch.setattr(redis_broker, "_BLOCK_TIMEOUT_MARGIN_S", 0.3)
    with TcpProxy.for_url(redis_url) as proxy:
        broker = RedisBroker(proxy.url, prefix="part")
        await broker.open(["q"])
        assert await broker.fetch(["q"], "c", 1, 60_000) == []  # BLOCK capped at 200 ms
        proxy.cut()
        # the first read meets the dropped connection, the second a new one into the blackhole
        for _ in range(2):
            start = time.monotonic()
            with pytest.raises(BrokerConnectionError):
                await asyncio.wait_for(broker.fetch(["q"], "c", 1, 60_000), 10)
            assert time.monotonic() - start < 5
        proxy.heal()
        broker.enqueue(Enqueue("q", b"after"))
        assert [d.data for d in await broker.fetch(["q"], "c", 1, 60_000)] == [b"after"]
        await broker.close()
        broker.close_sync()
