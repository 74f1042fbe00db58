"""Unique tasks, progress (update_state) and priorities on a real redis-server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from celeriac import Celeriac, TaskState
from celeriac._redis.keys import KeySchema
from celeriac.broker.redis import RedisBroker
from celeriac.task import unique_digest

pytestmark = pytest.mark.redis


@pytest.fixture
def app(redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("ctl", broker=redis_url, lease_s=2.0)
    yield app
    app.close()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _calls(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    for k in ("config|resetstat", "info", "hello", "ping", "client|setinfo"):  # connection set-up
        calls.pop(k, None)
    return calls


# ---- unique tasks ------------------------------------------------------------------------------------
def test_unique_for_returns_the_queued_task(app: Celeriac, r: redis.Redis, thread_worker: Any) -> None:
    ran: list[int] = []

    @app.task(ignore_result=False, unique_for=60)
    def report(x: int, fmt: str = "pdf") -> int:
        ran.append(x)
        return x

    first = report.delay(1)
    assert report.delay(1).id == first.id  # equal: name + args + kwargs
    assert report.apply_async((1,), {"fmt": "pdf"}).id != first.id  # kwargs differ from defaults: not equal
    other = report.delay(2)
    assert other.id != first.id
    assert app.broker.stats("default").ready == 3
    key = KeySchema().unique("default", unique_digest(report.name, (1,), {}))
    assert r.get(key) == first.id.encode() and 0 < r.pttl(key) <= 60_000
    thread_worker(app)
    assert first.get(timeout=10) == 1
    assert sorted(ran) == [1, 1, 2]
    # released when it finished (in the settle): an equal task queues again
    deadline = time.monotonic() + 5
    while r.exists(key) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not r.exists(key)
    again = report.delay(1)
    assert again.id != first.id and again.get(timeout=10) == 1


def test_unique_key_overrides_and_is_decided_with_the_enqueue(app: Celeriac, r: redis.Redis) -> None:
    @app.task
    def refresh(user: int) -> None:
        pass

    r.config_resetstat()
    a = refresh.apply_async((1,), unique_key="refresh:1")
    b = refresh.apply_async((2,), unique_key="refresh:1")  # other args, same key: equal
    assert a.id == b.id
    calls = _calls(r)
    assert calls.get("evalsha") == 2 and "xadd" in calls  # one script per send; XADD inside it
    assert app.broker.stats("default").ready == 1


def test_concurrent_producers_queue_one(app: Celeriac) -> None:
    @app.task(unique_for=30)
    def job(n: int) -> None:
        pass

    ids: list[str] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        ids.append(job.delay(7).id)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert app.broker.stats("default").ready == 1


def test_unique_lock_held_while_running_and_bounded_by_ttl_if_a_worker_dies(
    app: Celeriac, r: redis.Redis, thread_worker: Any
) -> None:
    gate = threading.Event()

    @app.task(ignore_result=False, unique_for=1.0)
    def slow() -> str:
        gate.wait(10)
        return "ok"

    first = slow.delay()
    thread_worker(app)
    while app.broker.stats("default").running == 0:
        time.sleep(0.02)
    assert slow.delay().id == first.id  # running counts as queued for uniqueness
    time.sleep(1.2)  # the lock's TTL bounds it (as after a worker died holding it)
    second = slow.delay()
    assert second.id != first.id
    gate.set()
    assert first.get(timeout=10) == "ok" and second.get(timeout=10) == "ok"
    # the first run's release does not delete the second's lock (compare and delete)...
    # ...and the second's release frees it
    key = KeySchema().unique("default", unique_digest(slow.name, (), {}))
    deadline = time.monotonic() + 5
    while r.exists(key) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not r.exists(key)


def test_unique_delayed_and_prioritized(app: Celeriac) -> None:
    @app.task(unique_for=60, priority=3)
    def later() -> None:
        pass

    a = later.apply_async(countdown=30)
    assert later.apply_async(countdown=30).id == a.id
    assert app.broker.stats("default").delayed == 1


def test_unique_retries_keep_the_lock_and_failure_releases_it(app: Celeriac, thread_worker: Any) -> None:
    attempts: list[int] = []

    @app.task(
        ignore_result=False,
        unique_for=60,
        max_retries=2,
        default_retry_delay=0.3,
        autoretry_for=(ValueError,),
    )
    def flaky() -> None:
        attempts.append(1)
        raise ValueError("no")

    @app.task(ignore_result=False, unique_for=60)
    def probe() -> None:
        pass

    first = flaky.delay()
    worker = thread_worker(app)
    deadline = time.monotonic() + 10
    while len(attempts) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flaky.delay().id == first.id  # between retries: still the same task
    worker.wait_outcomes(lambda out: any(o.task_id == first.id and o.kind == "dead" for o in out))
    assert flaky.delay().id != first.id  # dead-lettered: released
    assert probe.delay() is not None


def test_unique_in_a_bulk_send(app: Celeriac) -> None:
    @app.task(unique_for=60)
    def u(x: int) -> None:
        pass

    results = app.send_many([u.s(i % 3) for i in range(9)])
    assert len({res.id for res in results}) == 3
    assert app.broker.stats("default").ready == 3


def test_unique_options_are_checked(app: Celeriac) -> None:
    @app.task
    def t() -> None:
        pass

    with pytest.raises(ValueError, match="unique_for"):
        t.apply_async(unique_for=0)
    with pytest.raises(ValueError, match="unique_key"):
        t.apply_async(unique_key="")
    with pytest.raises(Exception, match="unique_for"):
        app.task(unique_for=-1)(lambda: None)


# ---- progress --------------------------------------------------------------------------------------
def test_update_state_progress_state_info_and_on_message(app: Celeriac, thread_worker: Any) -> None:
    gate = threading.Event()

    @app.task(bind=True)  # results ignored: progress is stored all the same (Celery does too)
    def work(self: Any, n: int) -> int:
        for i in range(n):
            self.update_state(state="PROGRESS", meta={"current": i + 1, "total": n})
            time.sleep(0.15)  # slower than the 0.1 s throttle: every state is written
        gate.wait(10)
        return n

    r = work.apply_async((3,), ignore_result=False)
    thread_worker(app)
    deadline = time.monotonic() + 10
    while r.state != "PROGRESS" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.state == "PROGRESS" and r.info["total"] == 3 and not r.ready()
    seen: list[dict[str, Any]] = []
    threading.Timer(0.6, gate.set).start()
    assert r.get(timeout=10, on_message=seen.append) == 3
    statuses = [m["status"] for m in seen]
    assert statuses[-1] == "SUCCESS" and seen[-1]["result"] == 3
    assert "PROGRESS" in statuses and all(m["task_id"] == r.id for m in seen)
    assert r.state == TaskState.SUCCESS and r.info == 3


def test_progress_never_overwrites_a_final_state(app: Celeriac, r: redis.Redis, thread_worker: Any) -> None:
    @app.task(ignore_result=False)
    def quick() -> int:
        return 1

    thread_worker(app)
    res = quick.delay()
    assert res.get(timeout=10) == 1
    # a late (throttled) progress write after the final state: refused in Lua
    assert app.backend is not None
    assert not app.backend.store_progress(res.id, b"\x81\xa1s\xa8PROGRESS", 60)
    assert not r.exists(KeySchema().progress(res.id))
    assert app.AsyncResult(res.id).state == TaskState.SUCCESS
    with pytest.raises(ValueError, match="final states"):
        quick.update_state(task_id=res.id, state="SUCCESS")


def test_progress_writes_are_throttled(app: Celeriac, r: redis.Redis) -> None:
    @app.task
    def t() -> None:
        pass

    r.config_resetstat()
    for i in range(500):
        t.update_state(task_id="throttled", state="PROGRESS", meta={"i": i})
    calls = _calls(r).get("evalsha", 0)
    assert calls <= 2  # the first at once; the rest coalesce into one write 0.1 s later
    time.sleep(0.3)
    assert app.AsyncResult("throttled").info == {"i": 499}  # latest wins
    assert _calls(r).get("evalsha", 0) <= 2


def test_progress_ttl_is_the_result_ttl(app: Celeriac, r: redis.Redis) -> None:
    @app.task(result_expires=30)
    def t() -> None:
        pass

    t.update_state(task_id="ttl-task", state="STEP", meta=[1, 2])
    assert 0 < r.pttl(KeySchema().progress("ttl-task")) <= 30_000
    assert app.AsyncResult("ttl-task").state == "STEP"


def test_progress_in_the_process_pool(app: Celeriac, thread_worker: Any) -> None:
    @app.task(bind=True, ignore_result=False, name="ctl.proc_progress")
    def proc(self: Any) -> str:
        self.update_state(state="HALF", meta={"done": 50})
        time.sleep(1.0)
        return "ok"

    thread_worker(app, pool="processes", concurrency=1)
    res = proc.delay()
    seen: list[dict[str, Any]] = []
    assert res.get(timeout=20, on_message=seen.append) == "ok"
    assert {"task_id": res.id, "status": "HALF", "result": {"done": 50}} in seen


def test_eager_update_state(redis_url: str) -> None:
    app = Celeriac("ctleager", broker=redis_url, task_always_eager=True)
    states: list[Any] = []

    @app.task(bind=True)
    def t(self: Any) -> int:
        self.update_state(state="PROGRESS", meta={"x": 1})
        states.append(app.AsyncResult(self.request.id).info)
        return 1

    assert t.delay().get() == 1
    assert states == [{"x": 1}]
    app.close()


# ---- priorities ------------------------------------------------------------------------------------
def test_higher_priority_sent_later_runs_first(app: Celeriac, thread_worker: Any) -> None:
    order: list[str] = []

    @app.task(priority=9)
    def low(i: int) -> None:
        order.append(f"low{i}")

    @app.task
    def mid(i: int) -> None:
        order.append(f"mid{i}")

    for i in range(5):
        low.delay(i)  # priority 9 (task default)
    for i in range(3):
        mid.apply_async((i,), priority=5)
    top = mid.apply_async(("top",), priority=0)  # 0 is the highest (Celery on Redis)
    worker = thread_worker(app, concurrency=1)
    worker.wait_outcomes(lambda out: len(out) == 9)
    assert order == ["midtop", "mid0", "mid1", "mid2", "low0", "low1", "low2", "low3", "low4"]
    assert top.id


def test_a_prioritized_message_wakes_an_idle_worker_and_retries_keep_their_level(
    app: Celeriac, thread_worker: Any
) -> None:
    seen: list[tuple[int, str]] = []

    @app.task(bind=True, max_retries=1, default_retry_delay=0.05)
    def t(self: Any, tag: str) -> None:
        seen.append((self.request.retries, self.request.queue))
        if self.request.retries == 0:
            raise self.retry()

    worker = thread_worker(app, concurrency=1)
    time.sleep(0.3)  # idle, blocked in its read of the default level only (for up to 5 s)
    sent = time.monotonic()
    t.apply_async(("x",), priority=7)  # the queue's first level: the blocked read is ended
    worker.wait_outcomes(lambda out: len(out) >= 1)
    assert time.monotonic() - sent < 2.0  # not the 5 s block timeout
    worker.wait_outcomes(lambda out: any(o.kind == "ack" for o in out))
    assert seen == [(0, "default"), (1, "default")]  # request.queue is the queue, not the level


def test_queues_without_priorities_pay_nothing(app: Celeriac, r: redis.Redis) -> None:
    @app.task
    def plain() -> None:
        pass

    plain.delay()
    r.config_resetstat()
    plain.delay()
    assert _calls(r) == {"xadd": 1}
    broker = RedisBroker(app.conf.broker_url)

    async def fetch() -> int:
        await broker.open(["default"])
        r.config_resetstat()
        got = await broker.fetch(["default"], "c", 10, 0)
        await broker.close()
        return len(got)

    assert asyncio.run(fetch()) == 2
    assert _calls(r) == {"xreadgroup": 1, "xread": 1}  # the fetch and the revocation read, one round trip


def test_priority_stats_purge_and_levels(app: Celeriac, r: redis.Redis) -> None:
    @app.task
    def t() -> None:
        pass

    t.apply_async(priority=2)
    t.apply_async(priority=2, countdown=60)
    t.delay()
    stats = app.broker.stats("default")
    assert (stats.ready, stats.delayed) == (2, 1)
    assert r.smembers(KeySchema().levels("default")) == {b"2"}
    assert app.broker.purge("default") == 3
    assert app.broker.stats("default").ready == 0


def test_priority_is_checked(app: Celeriac) -> None:
    @app.task
    def t() -> None:
        pass

    for bad in (-1, 10, 1.5, "1", True):
        with pytest.raises(ValueError, match="0 \\(highest\\) to 9"):
            t.apply_async(priority=bad)


def test_strict_order_inside_one_fetch(app: Celeriac) -> None:
    @app.task
    def t(i: int) -> None:
        pass

    for i in range(10):
        t.apply_async((i,), priority=9)
    for i in range(10):
        t.apply_async((i,), priority=1)
    broker = RedisBroker(app.conf.broker_url)

    async def fetch() -> list[str]:
        await broker.open(["default"])
        got = await broker.fetch(["default"], "c", 5, 0)
        await broker.close()
        return [d.queue for d in got]

    queues = asyncio.run(fetch())
    assert len(queues) == 5 and all(q.endswith("1") for q in queues)  # no lower level leased
