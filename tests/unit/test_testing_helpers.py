"""celeriac.testing: FakeClock, drain and the pytest fixtures (used here as a user would)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import celeriac.testing
from celeriac import Celeriac, CeleriacError, Worker
from celeriac.broker.base import Enqueue
from celeriac.execution import Outcome
from celeriac.testing import DrainResult, FakeClock, RedisServer, drain, drain_async, is_failure
from celeriac.testing.drain import default_queues


@pytest.fixture
def celeriac_settings() -> dict[str, Any]:
    # overriding the plugin's fixture, as a user's conftest.py would
    return {"task_ignore_result": False}


def test_public_names() -> None:
    assert sorted(celeriac.testing.__all__) == [
        "DrainResult",
        "FakeClock",
        "RedisCluster",
        "RedisSentinel",
        "RedisServer",
        "TcpProxy",
        "ThreadWorker",
        "descendant_pids",
        "drain",
        "drain_async",
        "free_cluster_port",
        "free_port",
        "is_failure",
        "redis_server_binary",
    ]


GRANDPARENT = """
import subprocess, sys, time
p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(p.pid, flush=True)
time.sleep(60)
"""


def test_descendant_pids_lists_children_and_grandchildren() -> None:
    child = subprocess.Popen([sys.executable, "-c", GRANDPARENT], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    pids = [child.pid]
    try:
        grandchild = int(child.stdout.readline())  # printed once the grandchild exists
        pids.append(grandchild)
        assert celeriac.testing.descendant_pids(child.pid) == [grandchild]
        assert {child.pid, grandchild} <= set(celeriac.testing.descendant_pids(os.getpid()))
    finally:
        for pid in reversed(pids):
            os.kill(pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()


# ---- FakeClock -----------------------------------------------------------------------------------
def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(100.0)
    calls: list[float] = []
    clock.subscribe(lambda: calls.append(clock()))

    assert clock() == clock.time() == 100.0
    assert clock.advance(1.5) == 101.5
    assert clock.time_ms() == 101_500
    clock.set(50.0)
    assert clock() == 50.0
    assert calls == [101.5, 50.0]
    with pytest.raises(ValueError):
        clock.advance(-1)


# ---- is_failure ----------------------------------------------------------------------------------
def test_is_failure() -> None:
    assert not is_failure(Outcome("ack"))
    assert not is_failure(Outcome("retry", exc=ValueError()))
    assert is_failure(Outcome("ack", exc=ValueError()))
    assert is_failure(Outcome("dead"))
    assert is_failure(Outcome("dead", exc=ValueError()))


# ---- fixtures and drain --------------------------------------------------------------------------
def test_memory_app_fixture_uses_settings_and_memory(celeriac_memory_app: Celeriac) -> None:
    assert celeriac_memory_app.conf.broker_url == "memory://"
    assert celeriac_memory_app.conf.result_backend == "memory://"
    assert celeriac_memory_app.conf.task_ignore_result is False  # from celeriac_settings


def test_drain_fixture_runs_tasks_and_reports_outcomes(
    celeriac_memory_app: Celeriac, celeriac_drain: Callable[..., DrainResult]
) -> None:
    @celeriac_memory_app.task
    def add(x: int, y: int) -> int:
        return x + y

    results = [add.delay(i, 1) for i in range(5)]
    outcome = celeriac_drain()

    assert [r.get(timeout=1) for r in results] == [1, 2, 3, 4, 5]
    assert len(outcome.succeeded) == 5 and outcome.failures == []
    assert outcome.stats.succeeded == 5
    assert celeriac_memory_app.broker.stats("default").ready == 0


def test_drain_raises_the_first_failure_and_keeps_the_traceback(
    celeriac_memory_app: Celeriac, celeriac_drain: Callable[..., DrainResult]
) -> None:
    @celeriac_memory_app.task
    def fails() -> None:
        raise LookupError("from the task")

    fails.delay()
    with pytest.raises(LookupError, match="from the task") as info:
        celeriac_drain()
    assert any(frame.name == "fails" for frame in info.traceback)


def test_drain_without_raising_collects_failures(celeriac_memory_app: Celeriac) -> None:
    @celeriac_memory_app.task
    def fails(n: int) -> None:
        raise ValueError(n)

    for n in range(3):
        fails.delay(n)
    outcome = drain(celeriac_memory_app, raise_first_failure=False)

    assert sorted(str(o.exc) for o in outcome.failures) == ["0", "1", "2"]
    assert outcome.stats.failed == 3


def test_drain_raises_for_a_dead_letter_without_an_exception(celeriac_memory_app: Celeriac) -> None:
    # a message dead-lettered by the broker (max_deliveries) has no outcome: drain still reports it
    app = celeriac_memory_app
    app.conf.update(max_deliveries=1, lease_s=0.05)

    async def lease_to_a_dead_worker() -> None:
        await app.broker.open(["default"])
        assert await app.broker.fetch(["default"], "crashed-worker", 1, 0)
        await app.broker.close()

    app.broker.enqueue(Enqueue("default", b"anything"))
    asyncio.run(lease_to_a_dead_worker())

    with pytest.raises(CeleriacError, match=r"1 message.*dead-lettered after max_deliveries"):
        drain(app, timeout_s=10)
    assert app.broker.stats("default").dead == 1


def test_drain_times_out_with_the_queue_state(celeriac_memory_app: Celeriac) -> None:
    @celeriac_memory_app.task
    def later() -> None:
        pass

    later.apply_async(countdown=60)
    with pytest.raises(TimeoutError, match="delayed=1"):
        drain(celeriac_memory_app, timeout_s=0.3)
    assert celeriac_memory_app.broker.stats("default").delayed == 1


def test_drain_defaults_to_every_queue_the_app_knows(
    celeriac_memory_app_factory: Callable[..., Celeriac],
) -> None:
    app = celeriac_memory_app_factory(task_routes={"reports.*": "reports"})

    @app.task(queue="emails")
    def send() -> None:
        pass

    app.broker.enqueue(Enqueue("adhoc", b"x"))
    assert default_queues(app) == ["default", "emails", "reports", "adhoc"]


async def test_drain_works_in_async_tests(celeriac_memory_app: Celeriac) -> None:
    @celeriac_memory_app.task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    first, second = double.delay(1), double.delay(2)
    drain(celeriac_memory_app)  # blocking form: runs on a helper thread's loop
    await drain_async(celeriac_memory_app)  # on this loop (nothing left)
    third = double.delay(3)
    await drain_async(celeriac_memory_app)

    assert [first.get(timeout=1), second.get(timeout=1), third.get(timeout=1)] == [2, 4, 6]


def test_fake_clock_app_runs_an_hour_countdown_at_once(
    celeriac_memory_app_factory: Callable[..., Celeriac],
) -> None:
    clock = FakeClock()
    app = celeriac_memory_app_factory(clock=clock)
    ran = threading.Event()

    @app.task
    def reminder() -> None:
        ran.set()

    reminder.apply_async(countdown=3600)
    worker = Worker(app)
    ready = threading.Event()

    async def main() -> None:
        run = asyncio.create_task(worker.run())
        await worker.wait_ready()
        ready.set()
        await run

    thread = threading.Thread(target=lambda: asyncio.run(main()))
    thread.start()
    try:
        assert ready.wait(5)
        assert not ran.wait(0.1)  # the scheduler is asleep now (it re-checks every 5 s on its own)
        start = time.monotonic()
        clock.advance(3600)  # wakes the worker's scheduler: no polling, no 5 s re-check
        assert ran.wait(2)
        assert time.monotonic() - start < 1.0
    finally:
        worker.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_redis_server_fixture(celeriac_redis_server: RedisServer) -> None:
    import redis

    assert celeriac_redis_server.port != 6379
    client = redis.Redis.from_url(celeriac_redis_server.url)
    try:
        assert client.ping()
    finally:
        client.close()
