"""Worker deaths and shutdowns with real processes: at-least-once by default, nothing lost."""

from __future__ import annotations

import signal
from typing import Any

import pytest
import redis

from celeriac import Celeriac

from .conftest import eventually, take

pytestmark = pytest.mark.redis


def test_kill_9_mid_task_runs_again_on_another_worker(
    process_workers: Any, producer: Celeriac, r: redis.Redis
) -> None:
    workers = process_workers(CELERIAC_LEASE_S="1")
    first = workers.start()
    producer.send_task("itest.wait_for_go", args=("t1",))
    assert take(r, "test:started", 1) == ["t1"]
    first.kill()  # SIGKILL: no chance to hand anything back
    first.wait()
    workers.start()
    # the second worker reclaims the expired lease (1 s) and runs the task again
    assert take(r, "test:started", 1, timeout_s=15) == ["t1"]
    r.rpush("test:go", "go")
    assert take(r, "test:finished", 1) == ["t1"]
    stats = producer.broker.stats("default")
    assert (stats.ready, stats.dead) == (0, 0)


def test_long_task_on_a_live_worker_is_never_delivered_twice(
    process_workers: Any, producer: Celeriac, r: redis.Redis
) -> None:
    workers = process_workers(CELERIAC_LEASE_S="0.3")
    workers.start()
    workers.start()  # an idle second worker, reclaiming every 60 ms
    producer.send_task("itest.slow", args=("long", 2.0))  # about 7 leases long
    assert take(r, "test:finished", 1, timeout_s=20) == ["long"]
    assert r.lrange("test:started", 0, -1) == [b"long"]


def test_poison_task_is_dead_lettered_after_max_deliveries(
    process_workers: Any, producer: Celeriac, r: redis.Redis, reliability: Any
) -> None:
    workers = process_workers(CELERIAC_LEASE_S="0.3", CELERIAC_MAX_DELIVERIES="2")
    producer.send_task("itest.suicide")
    for _ in range(2):  # each delivery kills its worker
        proc = workers.start()
        assert take(r, "test:started", 1, timeout_s=15) == ["suicide"]
        assert proc.wait(15) == 1
    survivor = workers.start()
    (entry,) = _wait_dead(producer, "default")
    assert "delivered 2 times without an outcome" in entry.reason
    assert survivor.poll() is None  # the worker that dead-lettered it is alive and well
    assert r.llen("test:started") == 0
    reliability.record(
        "Poison task: kills its worker on every delivery",
        "dead-lettered after max_deliveries=2 with the reason; the next worker survives",
        f"2 workers killed, 1 dead letter: {entry.reason!r}",
    )


def _wait_dead(app: Celeriac, queue: str) -> list[Any]:
    # dead-lettering happens inside a worker process: watch the dead-letter stream with XREAD BLOCK
    stream = app.broker.keys.queue(queue).dead  # type: ignore[attr-defined]
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        client.xread({stream: "0-0"}, count=1, block=15_000)
    finally:
        client.close()
    return app.broker.dead_letters(queue, 10)


def test_at_most_once_task_is_not_run_again_after_a_crash(
    process_workers: Any, producer: Celeriac, r: redis.Redis
) -> None:
    workers = process_workers(CELERIAC_LEASE_S="0.3")
    first = workers.start()
    producer.send_task("itest.at_most_once", args=("once",))
    assert take(r, "test:started", 1) == ["once"]
    first.kill()
    first.wait()
    workers.start()
    producer.send_task("itest.slow", args=("marker", 1.0))  # runs while several leases expire
    assert take(r, "test:finished", 1, timeout_s=15) == ["marker"]
    assert r.lrange("test:started", 0, -1) == [b"marker"]  # "once" was acked before it ran: never again
    eventually(lambda: producer.broker.stats("default").running == 0)
    assert producer.broker.stats("default").ready == 0


def test_warm_shutdown_lets_the_running_task_finish(
    process_workers: Any, producer: Celeriac, r: redis.Redis
) -> None:
    workers = process_workers(CELERIAC_LEASE_S="5")
    proc = workers.start()
    result = producer.send_task("itest.slow", args=("warm", 0.5))
    assert take(r, "test:started", 1) == ["warm"]
    proc.send_signal(signal.SIGTERM)
    assert result.get(timeout=15) == "warm"
    assert proc.wait(15) == 0
    stats = producer.broker.stats("default")
    assert (stats.ready, stats.running, stats.dead) == (0, 0, 0)


def test_cold_shutdown_hands_the_running_task_back_at_once(
    process_workers: Any, producer: Celeriac, r: redis.Redis
) -> None:
    workers = process_workers(CELERIAC_LEASE_S="30")  # a lease expiry would take 30 s: not what happens
    proc = workers.start()
    producer.send_task("itest.wait_for_go", args=("cold",))
    assert take(r, "test:started", 1) == ["cold"]
    proc.send_signal(signal.SIGTERM)
    workers.wait_log(proc, "warm shutdown")  # two signals sent at once would merge into one
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    workers.start()
    assert take(r, "test:started", 1, timeout_s=15) == ["cold"]  # reclaimed at once, not after 30 s
    r.rpush("test:go", "go", "go")
    assert "cold" in take(r, "test:finished", 1)
