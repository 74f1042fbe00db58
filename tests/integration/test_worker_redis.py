"""End to end on a real redis-server: the worker, results, retries, dead letters, bad input."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from celeriac import Celeriac, NotRegistered, TaskExpiredError, TaskState
from celeriac._redis.keys import KeySchema

pytestmark = pytest.mark.redis


@pytest.fixture
def app(redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("it", broker=redis_url, lease_s=2.0)
    yield app
    app.close()


def test_delay_and_get_sync_and_async(app: Celeriac, thread_worker: Any) -> None:
    @app.task(ignore_result=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(ignore_result=False)
    async def aadd(x: int, y: int) -> int:
        await asyncio.sleep(0)
        return x + y

    thread_worker(app)
    assert add.delay(1, 2).get(timeout=10) == 3
    assert aadd.delay(2, 3).get(timeout=10) == 5
    result = add.apply_async((4, 5))
    assert result.get(timeout=10) == 9
    assert result.state is TaskState.SUCCESS and result.ready() and result.successful()


def test_request_context_inside_tasks(app: Celeriac, thread_worker: Any) -> None:
    @app.task(bind=True, ignore_result=False)
    def who(self: Any) -> list[Any]:
        return [self.request.id, self.request.retries, self.request.queue, self.request.delivery]

    thread_worker(app)
    result = who.delay()
    assert result.get(timeout=10) == [result.id, 0, "default", 1]


def test_sending_is_one_redis_command_and_never_touches_results(app: Celeriac, r: redis.Redis) -> None:
    @app.task(ignore_result=False)
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(0, 0)  # connection set-up (CLIENT SETINFO...) happens once, outside the measurement
    r.config_resetstat()
    add.delay(1, 2)
    stats = r.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    assert calls == {"xadd": 1}
    assert not list(r.scan_iter("*:result:*"))


def test_results_are_ignored_by_default_but_errors_are_kept_with_a_ttl(
    app: Celeriac, r: redis.Redis, thread_worker: Any
) -> None:
    @app.task
    def ok() -> int:
        return 1

    @app.task
    def bad() -> None:
        raise ValueError("kept")

    thread_worker(app)
    good, failed = ok.delay(), bad.delay()
    with pytest.raises(ValueError, match="kept"):
        app.AsyncResult(failed.id).get(timeout=10)
    assert r.exists(KeySchema().result(good.id)) == 0
    ttl = r.pttl(KeySchema().result(failed.id))
    assert 0 < ttl <= app.conf.result_expires_s * 1000


def test_result_ttl_per_task(app: Celeriac, r: redis.Redis, thread_worker: Any) -> None:
    @app.task(ignore_result=False, result_expires=30)
    def short() -> int:
        return 1

    thread_worker(app)
    result = short.delay()
    assert result.get(timeout=10) == 1
    assert 0 < r.pttl(KeySchema().result(result.id)) <= 30_000


def test_retry_with_exponential_backoff(app: Celeriac, thread_worker: Any) -> None:
    attempts: list[float] = []

    @app.task(
        bind=True,
        autoretry_for=(OSError,),
        max_retries=4,
        retry_backoff=0.05,
        retry_jitter=False,
        ignore_result=False,
    )
    def flaky(self: Any) -> int:
        attempts.append(time.monotonic())
        if self.request.retries < 3:
            raise OSError("not yet")
        return self.request.retries

    thread_worker(app)
    assert flaky.delay().get(timeout=20) == 3
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    # delays 0.05, 0.1, 0.2 s: each retry waits at least its backoff (promotion happens when due)
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2]):
        assert gap >= expected * 0.9


def test_exhausted_retries_fail_and_leave_a_dead_letter(app: Celeriac, thread_worker: Any) -> None:
    @app.task(autoretry_for=(OSError,), max_retries=1, retry_backoff=0.01, retry_jitter=False)
    def down() -> None:
        raise OSError("still down")

    worker = thread_worker(app)
    result = down.delay()
    with pytest.raises(OSError, match="still down"):
        app.AsyncResult(result.id).get(timeout=10)
    worker.wait_outcomes(lambda outcomes: any(o.kind == "dead" for o in outcomes))
    (entry,) = app.broker.dead_letters("default", 10)
    assert entry.task_id == result.id and "max retries (1) exceeded" in entry.reason


def test_countdown_waits_server_side_and_wakes_an_idle_worker(app: Celeriac, thread_worker: Any) -> None:
    @app.task(ignore_result=False)
    def stamp() -> float:
        return time.time()

    thread_worker(app)
    sent = time.time()
    result = stamp.apply_async(countdown=0.3)
    assert app.broker.stats("default").delayed == 1  # parked in Redis, not held by the worker
    ran = result.get(timeout=10)
    assert ran - sent >= 0.29
    # the wake-up path, not the 5 s safety re-check, promoted it
    assert ran - sent < 3.0


def test_every_running_task_keeps_its_lease(redis_url: str, thread_worker: Any, reliability: Any) -> None:
    """Several tasks on one worker, each running for several leases, with an idle worker watching:
    every lease is renewed, none is reclaimed, each task runs once. (extend.lua renewed only the
    first delivery of each call: Lua passes one value of ``unpack(t)`` followed by more arguments.)"""
    lease_s = 0.5
    app = Celeriac("it", broker=redis_url, lease_s=lease_s)
    runs: list[int] = []
    started = threading.Condition()
    release = threading.Event()

    @app.task
    def hold(i: int) -> None:
        with started:
            runs.append(i)
            started.notify_all()
        release.wait(30)

    busy = thread_worker(app, concurrency=4)
    for i in range(4):
        hold.delay(i)
    with started:
        assert started.wait_for(lambda: len(runs) == 4, 10)
    idle = thread_worker(app, concurrency=4)  # reclaims every 0.1 s whatever has expired
    time.sleep(4 * lease_s)  # the tasks run on through four leases: time itself is what is tested
    release.set()
    busy.wait_outcomes(lambda outcomes: len(outcomes) == 4)
    assert sorted(runs) == [0, 1, 2, 3]  # none ran twice
    assert busy.worker.stats.reclaimed + idle.worker.stats.reclaimed == 0
    assert idle.outcomes == []
    reliability.record(
        f"Long tasks: 4 tasks on one worker, each running for 4 leases ({lease_s:g} s), another "
        "worker reclaiming every 0.1 s",
        "every lease renewed; nothing reclaimed; each task ran once",
        f"{len(runs)} runs of 4 tasks, {busy.worker.stats.reclaimed + idle.worker.stats.reclaimed} reclaimed",
    )


def test_unknown_task_is_dead_lettered_and_the_worker_goes_on(
    app: Celeriac, thread_worker: Any, reliability: Any
) -> None:
    @app.task(ignore_result=False)
    def ok() -> str:
        return "fine"

    worker = thread_worker(app)
    sent = time.monotonic()
    lost = app.send_task("it.not_registered_anywhere", args=(1,))
    with pytest.raises(NotRegistered):
        lost.get(timeout=10)
    refused_s = time.monotonic() - sent
    assert ok.delay().get(timeout=10) == "fine"
    worker.wait_outcomes(lambda outcomes: any(o.kind == "dead" for o in outcomes))
    (entry,) = app.broker.dead_letters("default", 10)
    assert "unknown task" in entry.reason and entry.task_id == lost.id
    reliability.record(
        "Unknown task name (sent by name, registered nowhere)",
        "dead-lettered with the reason; get() raises NotRegistered; the next task runs",
        f"1 dead letter ({entry.reason[:70]!r}...), NotRegistered after {refused_s * 1000:.0f} ms; "
        f"next task ran",
    )


def test_wrong_arguments_by_name_are_dead_lettered(
    app: Celeriac, thread_worker: Any, reliability: Any
) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    worker = thread_worker(app)
    producer = Celeriac("producer", broker=app.conf.broker_url)  # does not import the task
    result = producer.send_task(add.name, args=(1,))  # so nothing can check the arguments at send
    with pytest.raises(TypeError):
        app.AsyncResult(result.id).get(timeout=10)
    with pytest.raises(TypeError):  # where the task is importable, the caller gets the error at send
        add.delay(1)
    producer.close()
    worker.wait_outcomes(lambda outcomes: any(o.kind == "dead" for o in outcomes))
    (entry,) = app.broker.dead_letters("default", 10)
    assert "wrong arguments" in entry.reason
    assert app.broker.stats("default").ready == 0  # the refused send queued nothing
    reliability.record(
        "Wrong arguments (a task called with too few)",
        "TypeError at send where the task is importable; sent by name: dead-lettered with the reason, "
        "get() raises TypeError",
        f"1 refused at send, 0 queued; 1 dead letter by name: 'wrong arguments: ...{entry.reason[-55:]}'",
    )


def test_undecodable_message_is_dead_lettered(app: Celeriac, r: redis.Redis, thread_worker: Any) -> None:
    @app.task(ignore_result=False)
    def ok() -> str:
        return "fine"

    r.xadd(KeySchema().queue("default").ready, {"m": b"\x00\xffnot msgpack"})
    worker = thread_worker(app)
    assert ok.delay().get(timeout=10) == "fine"
    worker.wait_outcomes(lambda outcomes: any(o.kind == "dead" for o in outcomes))
    (entry,) = app.broker.dead_letters("default", 10)
    assert "undecodable" in entry.reason


def test_non_serializable_result_is_a_failure(app: Celeriac, thread_worker: Any) -> None:
    @app.task(ignore_result=False)
    def weird() -> object:
        return object()

    thread_worker(app)
    with pytest.raises(Exception, match="not serializable"):
        weird.delay().get(timeout=10)


def test_expired_task_never_runs(app: Celeriac, thread_worker: Any) -> None:
    ran: list[int] = []

    @app.task(ignore_result=False)
    def job() -> None:
        ran.append(1)

    result = job.apply_async(expires=-1)  # already past its expiry when a worker sees it
    thread_worker(app)
    with pytest.raises(TaskExpiredError):
        result.get(timeout=10)
    assert result.state is TaskState.EXPIRED
    assert ran == []


def test_send_many_and_queue_priority(app: Celeriac, thread_worker: Any) -> None:
    order: list[str] = []

    @app.task
    def mark(tag: str) -> None:
        order.append(tag)

    app.send_many([mark.s("low").set(queue="low") for _ in range(3)])
    app.send_many([mark.s("high").set(queue="high") for _ in range(3)])
    worker = thread_worker(app, queues=["high", "low"], concurrency=1, pool="threads")
    worker.wait_outcomes(lambda outcomes: len(outcomes) == 6)
    worker.stop()
    assert order == ["high"] * 3 + ["low"] * 3


def test_worker_keeps_a_fixed_number_of_connections(
    app: Celeriac, r: redis.Redis, thread_worker: Any
) -> None:
    @app.task
    async def nap() -> None:
        await asyncio.sleep(0.05)

    before = len(r.client_list())
    worker = thread_worker(app, concurrency=500)
    app.send_many([nap.s() for _ in range(2000)])
    worker.wait_outcomes(lambda outcomes: len(outcomes) >= 1000)  # mid-run, hundreds of tasks in flight
    during = len(r.client_list())
    assert during - before <= 8, f"worker opened {during - before} connections"


def test_every_key_is_bounded_or_expires(app: Celeriac, r: redis.Redis, thread_worker: Any) -> None:
    @app.task(ignore_result=False)
    def ok() -> int:
        return 1

    @app.task
    def bad() -> None:
        raise ValueError

    thread_worker(app)
    ok.delay().get(timeout=10)
    app.send_task("nope")
    with pytest.raises(ValueError):
        app.AsyncResult(bad.delay().id).get(timeout=10)
    schema = KeySchema()
    q = schema.queue("default")
    bounded = {q.ready, q.delayed, q.dead}  # streams emptied on ack / capped; delayed drains when due
    for key in r.scan_iter("*"):
        name = key.decode()
        if name in bounded:
            continue
        assert r.pttl(name) > 0, f"{name} has no TTL"


def test_stopped_workers_leave_the_consumer_group(app: Celeriac, r: redis.Redis, thread_worker: Any) -> None:
    @app.task(ignore_result=False)
    def ok() -> int:
        return 1

    for _ in range(3):
        worker = thread_worker(app)
        assert ok.delay().get(timeout=10) == 1
        worker.wait_outcomes(lambda outcomes: len(outcomes) == 1)
        worker.stop()
    assert r.xinfo_consumers(KeySchema().queue("default").ready, "celeriac") == []


def test_scripts_survive_a_flushed_script_cache(app: Celeriac, r: redis.Redis, thread_worker: Any) -> None:
    @app.task(ignore_result=False)
    def ok() -> int:
        return 1

    thread_worker(app)
    assert ok.delay().get(timeout=10) == 1
    r.script_flush()  # as after a restart or failover: EVALSHA answers NOSCRIPT
    assert ok.apply_async(countdown=0.01).get(timeout=10) == 1
    assert ok.delay().get(timeout=10) == 1
