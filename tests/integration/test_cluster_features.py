"""What main gained since the cluster broker, end to end on a real Redis Cluster (3 masters): workflows
(a chain and a chord whose members go to queues on different masters and to a sharded queue), unique
tasks, revocation, rate and concurrency limits, periodic slot claims, monitor recording, progress and
results (a user-supplied task id with braces too). Each would fail with CROSSSLOT (or route a script to
the wrong node) if one of its atomic scripts named keys of two slots.

Quick (a few seconds each, on the session's cluster): not marked slow. The slot migration and
failover tests are in test_cluster.py (slow)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from celeriac import Celeriac, ChordError, chain, chord, group
from celeriac.beat import Scheduler
from celeriac.monitor import MonitorReader
from celeriac.testing import FakeClock, RedisCluster, ThreadWorker

pytestmark = pytest.mark.redis

T = 30  # seconds any get() may wait


def _queues_on_distinct_masters(cluster: RedisCluster, n: int = 3) -> list[str]:
    """Queue names whose hash tags live on ``n`` different masters (chosen by slot, not by luck)."""
    found: dict[int, str] = {}
    for i in range(1000):
        name = f"q{i}"
        port = cluster.master_of(key_slot(name.encode())).port
        found.setdefault(port, name)
        if len(found) == n:
            return sorted(found.values())
    raise AssertionError("the cluster's slots are not spread over its masters")


@pytest.fixture
def queues(redis_cluster: RedisCluster, cluster_url: str) -> list[str]:
    return _queues_on_distinct_masters(redis_cluster)


@pytest.fixture
def app(cluster_url: str) -> Iterator[Celeriac]:
    app = Celeriac("clf", broker=cluster_url, from_env=False, lease_s=2.0, queue_shards={"wide": 3})
    yield app
    app.close()


@pytest.fixture
def client(redis_cluster: RedisCluster) -> Iterator[Any]:
    c = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    yield c
    c.close()


def _worker(app: Celeriac, queues: list[str], **options: Any) -> ThreadWorker:
    return ThreadWorker(app, queues=queues, **options).start()


def _no_connection_trouble(caplog: pytest.LogCaptureFixture) -> None:
    """No loop of the worker met "Redis unreachable" (the asyncio cluster client once raised
    MaxConnectionsError when more commands ran at once than its node pools held)."""
    trouble = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert not trouble, trouble[:3]


def test_chain_group_and_chord_across_masters_and_shards(
    app: Celeriac, queues: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    qa, qb, qc = queues

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def tsum(xs: list[int]) -> int:
        return sum(xs)

    @app.task
    def fail(*args: Any) -> None:
        raise ValueError("expected")

    worker = _worker(app, [*queues, "wide"], concurrency=8, pool="threads")
    try:
        # a chain hopping over the three masters: each step dispatched into the next queue's slot
        res = (add.s(1, 1).set(queue=qa) | add.s(2).set(queue=qb) | add.s(3).set(queue=qc)).delay()
        assert res.get(timeout=T) == 7
        # a group over the masters and the shards of a sharded queue
        members = [add.si(i, i).set(queue=[qa, qb, qc, "wide"][i % 4]) for i in range(12)]
        assert group(members).delay().get(timeout=T) == [2 * i for i in range(12)]
        # a chord: header members on every master and shard, the body's fan-in keys in its queue's slot
        header = [add.si(i, 1).set(queue=[qa, qb, "wide"][i % 3]) for i in range(9)]
        body = tsum.s().set(queue=qc)
        assert chord(header)(body).get(timeout=T) == sum(i + 1 for i in range(9))
        # a chord whose body goes to a sharded queue, inside a chain
        c = chain(
            add.si(1, 2).set(queue=qa),
            chord([add.s(i).set(queue=qb) for i in range(3)], tsum.s().set(queue="wide")),
        )
        assert c.delay().get(timeout=T) == sum(3 + i for i in range(3))
        # a failing member fails the body (once), across slots too
        bad = chord([add.si(1, 1).set(queue=qa), fail.si().set(queue=qb)])(tsum.s().set(queue=qc))
        with pytest.raises(ChordError, match="raised ValueError"):
            bad.get(timeout=T, follow_parents=False)
    finally:
        worker.stop()
    _no_connection_trouble(caplog)


def test_unique_tasks_revocation_and_limits(app: Celeriac, queues: list[str]) -> None:
    qa, qb, _qc = queues
    ran: list[str] = []
    running = [0]
    peak = [0]
    lock = threading.Lock()

    @app.task(ignore_result=False, unique_for=60)
    def report(x: int) -> int:
        ran.append(f"report{x}")
        return x

    @app.task(ignore_result=False)
    def later(x: int) -> int:
        ran.append(f"later{x}")
        return x

    @app.task(rate_limit="50/s")
    def limited(i: int) -> None:
        ran.append(f"limited{i}")

    @app.task(max_concurrency=2)
    def conc(i: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        ran.append(f"conc{i}")

    first = report.apply_async((1,), queue=qa)
    assert report.apply_async((1,), queue=qa).id == first.id  # the unique lock in qa's slot
    revoked = later.apply_async((1,), queue=qb, countdown=1)
    app.control.revoke(revoked.id)
    kept = later.apply_async((2,), queue=qb, countdown=1)
    for i in range(10):
        limited.apply_async((i,), queue=qa)
        conc.apply_async((i,), queue=qb)  # a limiter is per queue (its keys are in the queue's slot)
    worker = _worker(app, [qa, qb], concurrency=6, pool="threads")
    try:
        assert first.get(timeout=T) == 1 and kept.get(timeout=T) == 2
        deadline = time.monotonic() + T
        while sum(x.startswith(("limited", "conc")) for x in ran) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert ran.count("report1") == 1 and "later1" not in ran
    assert sorted(x for x in ran if x.startswith("limited")) == sorted(f"limited{i}" for i in range(10))
    assert sum(x.startswith("conc") for x in ran) == 10 and peak[0] <= 2


def test_periodic_slots_are_claimed_once_on_a_cluster(app: Celeriac, queues: list[str]) -> None:
    @app.task(name="clf.tick")
    def tick() -> None:
        pass

    app.conf.beat_schedule = {
        "every-10s": {"task": "clf.tick", "schedule": 10.0, "options": {"queue": queues[1]}}
    }
    clock = FakeClock(1_800_000_000.0)
    schedulers = [Scheduler(app, clock=clock) for _ in range(3)]
    for s in schedulers:
        s.open()
    for _ in range(240):  # 60 s of ticks, every scheduler at each step
        for s in schedulers:
            s.tick()
        clock.advance(0.25)
    enqueued = sum(s.stats.enqueued for s in schedulers)
    assert enqueued >= 6 and sum(s.stats.already_claimed for s in schedulers) == 2 * enqueued
    stats = app.broker.stats(queues[1])
    assert stats.ready + stats.delayed == enqueued  # each slot once, in the queue's slot


def test_monitor_recording_progress_and_results_on_a_cluster(
    app: Celeriac, queues: list[str], client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    qa, qb, qc = queues
    go = threading.Event()

    @app.task(bind=True, ignore_result=False)
    def work(self: Any, n: int) -> int:
        self.update_state(state="PROGRESS", meta={"done": n})
        go.wait(T)
        return n

    @app.task(ignore_result=False)
    def boom() -> None:
        raise ValueError("expected")

    worker = _worker(app, queues, concurrency=4, pool="threads")
    try:
        res = work.apply_async((5,), queue=qa)
        deadline = time.monotonic() + T
        while res.state != "PROGRESS" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert res.state == "PROGRESS" and res.info == {"done": 5}  # progress in the result's slot
        go.set()
        assert res.get(timeout=T) == 5 and res.state == "SUCCESS"
        # a user-supplied id, braces included (a hash tag of its own), and a stored failure
        odd = work.apply_async((7,), queue=qb, task_id="{odd}}id")
        assert odd.get(timeout=T) == 7 and app.AsyncResult("{odd}}id").get(timeout=T) == 7
        failed = boom.apply_async(queue=qc)
        with pytest.raises(ValueError, match="expected"):
            failed.get(timeout=T)
        reader = MonitorReader(client)
        deadline = time.monotonic() + T
        while len(reader.page(queues, limit=100).records) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        records = reader.page(queues, limit=100).records
        assert {r.task_id for r in records} >= {res.id, odd.id, failed.id}
        assert [r.state for r in reader.task(failed.id, queues)][-1] == "FAILURE"
    finally:
        go.set()
        worker.stop()
    _no_connection_trouble(caplog)


def test_priority_levels_run_highest_first_on_a_cluster(app: Celeriac, queues: list[str]) -> None:
    q = queues[0]
    order: list[str] = []

    @app.task(priority=9)
    def low(i: int) -> None:
        order.append(f"low{i}")

    @app.task
    def mid(i: Any) -> None:
        order.append(f"mid{i}")

    for i in range(5):
        low.apply_async((i,), queue=q)
    for i in range(3):
        mid.apply_async((i,), queue=q, priority=5)
    mid.apply_async(("top",), queue=q, priority=0)
    worker = _worker(app, [q], concurrency=1)
    try:
        worker.wait_outcomes(lambda out: len(out) == 9, timeout_s=T)
    finally:
        worker.stop()
    assert order == ["midtop", "mid0", "mid1", "mid2", "low0", "low1", "low2", "low3", "low4"]
