"""Worker deaths and shutdowns with real processes: at-least-once by default, nothing lost."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
import redis

from celeriac import Celeriac
from celeriac._redis.keys import GROUP
from celeriac.testing import descendant_pids

from .conftest import eventually, take

pytestmark = pytest.mark.redis


def test_kill_9_mid_task_runs_again_on_another_worker(
    process_workers: Any, producer: Celeriac, r: redis.Redis, reliability: Any
) -> None:
    workers = process_workers(CELERIAC_LEASE_S="1")
    first = workers.start()
    producer.send_task("itest.wait_for_go", args=("t1",))
    assert take(r, "test:started", 1) == ["t1"]
    first.kill()  # SIGKILL: no chance to hand anything back
    first.wait()
    killed_at = time.monotonic()
    workers.start()
    # the second worker reclaims the expired lease (1 s) and runs the task again
    assert take(r, "test:started", 1, timeout_s=15) == ["t1"]
    rerun_s = time.monotonic() - killed_at
    r.rpush("test:go", "go")
    assert take(r, "test:finished", 1) == ["t1"]
    stats = producer.broker.stats("default")
    assert (stats.ready, stats.dead) == (0, 0)
    reliability.record(
        "kill -9 of a worker mid-task; a new worker started after the kill",
        "the task runs again on the new worker once the lease expired, and finishes",
        f"1 task re-run {rerun_s:.1f} s after the kill (lease 1 s, worker start included); "
        "finished 1 time, 0 ready, 0 dead letters",
    )


def test_long_task_on_a_live_worker_is_never_delivered_twice(
    process_workers: Any, producer: Celeriac, r: redis.Redis, reliability: Any
) -> None:
    workers = process_workers(CELERIAC_LEASE_S="0.3")
    workers.start()
    workers.start()  # an idle second worker, reclaiming every 60 ms
    producer.send_task("itest.slow", args=("long", 2.0))  # about 7 leases long
    assert take(r, "test:finished", 1, timeout_s=20) == ["long"]
    assert r.lrange("test:started", 0, -1) == [b"long"]
    reliability.record(
        "A task running much longer than the lease, next to an idle worker that reclaims every 60 ms",
        "the live worker's renewals keep the delivery: it never runs twice",
        "a 2 s task with a 0.3 s lease (about 7 leases long): started 1 time",
    )


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
    process_workers: Any, producer: Celeriac, r: redis.Redis, reliability: Any
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
    reliability.record(
        "kill -9 of a worker running an `acks_late=False` task",
        "at-most-once: the task is not run again",
        "0 re-runs while a 1 s task ran on the next worker (over 3 leases of 0.3 s); 0 running, 0 ready",
    )


def test_warm_shutdown_lets_the_running_task_finish(
    process_workers: Any, producer: Celeriac, r: redis.Redis, reliability: Any
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
    reliability.record(
        "SIGTERM during a task (warm shutdown)",
        "the running task finishes and its result is recorded before the worker exits",
        "1 result recorded, exit code 0; 0 ready, 0 running, 0 dead letters",
    )


def test_cold_shutdown_hands_the_running_task_back_at_once(
    process_workers: Any, producer: Celeriac, r: redis.Redis, reliability: Any
) -> None:
    workers = process_workers(CELERIAC_LEASE_S="30")  # a lease expiry would take 30 s: not what happens
    proc = workers.start()
    producer.send_task("itest.wait_for_go", args=("cold",))
    assert take(r, "test:started", 1) == ["cold"]
    proc.send_signal(signal.SIGTERM)
    workers.wait_log(proc, "warm shutdown")  # two signals sent at once would merge into one
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    exited_at = time.monotonic()
    workers.start()
    assert take(r, "test:started", 1, timeout_s=15) == ["cold"]  # reclaimed at once, not after 30 s
    rerun_s = time.monotonic() - exited_at
    r.rpush("test:go", "go", "go")
    assert "cold" in take(r, "test:finished", 1)
    assert rerun_s < 15
    reliability.record(
        "Two SIGTERMs during a task (cold shutdown)",
        "the interrupted task is handed back and runs again at once, not after the lease",
        f"1 task re-run {rerun_s:.1f} s after the worker exited (lease 30 s, worker start included)",
    )


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie runs nothing
    except OSError:
        return True


KILL_LEASE_S = 1.0


@pytest.mark.parametrize("pool", ["asyncio", "threads", "processes", "gevent"])
def test_kill_9_of_a_worker_with_several_tasks_leased_each_runs_once_more_elsewhere(
    pool: str, cli_worker: Any, producer: Celeriac, r: redis.Redis, reliability: Any
) -> None:
    lease = {"CELERIAC_LEASE_S": str(KILL_LEASE_S)}
    a = cli_worker("-P", pool, "-c", "3", **lease)
    tokens = sorted(f"{pool}-{i}" for i in range(3))
    for token in tokens:
        producer.send_task("itest.wait_for_go", args=(token,))
    assert sorted(take(r, "test:started", 3)) == tokens  # all three leased to A and running
    below = descendant_pids(a.proc.pid)  # processes: the fork server and its children
    if pool == "processes":
        assert len(below) >= 4
    b = cli_worker("-c", "3", **lease)  # idle until A's leases expire

    a.proc.kill()  # SIGKILL: no hand-back, no outcome, nothing recorded
    a.proc.wait()
    killed_at = time.monotonic()
    eventually(lambda: all(_dead(p) for p in below), timeout_s=5)  # children die with the worker
    assert sorted(take(r, "test:started", 3, timeout_s=15)) == tokens
    takeover_s = time.monotonic() - killed_at
    assert takeover_s < KILL_LEASE_S + 3.0  # the lease, a reclaim period (0.2 s), a loaded machine
    r.rpush("test:go", *["go"] * 3)
    assert sorted(take(r, "test:finished", 3)) == tokens
    keys = producer.broker.keys.queue("default")  # type: ignore[attr-defined]
    eventually(lambda: r.xpending(keys.ready, GROUP)["pending"] == 0)
    assert b.stop() == 0
    assert "(3 processed)" in b.log and b.log.count("reclaimed default") == 3
    assert "was lost before its outcome was recorded" not in b.log
    # exactly once after the takeover: no other finish, nothing waiting, running or dead-lettered
    assert r.llen("test:finished") == 0
    assert (r.xlen(keys.ready), r.xlen(keys.dead)) == (0, 0)
    reliability.record(
        f"kill -9 of a `-P {pool}` worker running 3 tasks"
        + (" (worker, fork server and children)" if pool == "processes" else ""),
        "another worker takes every leased task over within the lease and completes each exactly once",
        f"3 tasks leased, 3 reclaimed and completed by worker B, taken over {takeover_s:.1f} s after the "
        f"kill (lease {KILL_LEASE_S:.0f} s); each finished once, 0 pending, 0 dead letters"
        + (f"; {len(below)} descendant processes died with the worker" if below else ""),
    )
