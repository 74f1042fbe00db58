"""Autoscale on a real Redis: a worker grows at once to meet a backlog, up to MAX, and shrinks back
to MIN once its slots are idle. Every pool: asyncio and threads in process, processes as a subprocess."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from celeriac import Celeriac
from celeriac.worker.autoscale import Autoscale

from .conftest import eventually, take

pytestmark = pytest.mark.redis


@pytest.fixture
def app(redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("scale", broker=redis_url)
    yield app
    app.close()


@pytest.mark.parametrize(("pool", "kind"), [("asyncio", "async"), ("asyncio", "sync"), ("threads", "sync")])
def test_grows_to_the_backlog_and_shrinks_when_idle(
    app: Celeriac, thread_worker: Any, pool: str, kind: str
) -> None:
    gate = threading.Event()
    started = threading.Semaphore(0)

    @app.task
    def block() -> None:
        started.release()
        gate.wait(30)

    @app.task
    async def ablock() -> None:
        started.release()
        while not gate.is_set():  # a coroutine cannot wait on a threading.Event without a thread
            await asyncio.sleep(0.005)

    task = ablock if kind == "async" else block
    try:
        w = thread_worker(app, pool=pool, autoscale=Autoscale(6, 1, idle_s=0.5))
        assert w.worker.concurrency == 1
        app.send_many([task.s() for _ in range(6)])
        for _ in range(6):  # all six run at once: the worker grew from 1 to 6 slots
            assert started.acquire(timeout=10)
        assert w.worker.concurrency == 6
        app.send_many([task.s() for _ in range(3)])  # more than MAX: they wait for a free slot
        assert not started.acquire(timeout=0.3)
    finally:
        gate.set()
    w.wait_outcomes(lambda outcomes: len(outcomes) == 9)
    eventually(lambda: w.worker.concurrency == 1)  # idle for 0.5 s: back to MIN


def test_processes_pool_starts_and_stops_children(redis_url: str, cli_worker: Any) -> None:
    producer = Celeriac("producer", broker=redis_url)
    r = redis.Redis.from_url(redis_url)
    w = cli_worker(
        "-P", "processes", "--autoscale", "3,1", "--autoscale-idle", "0.5", CELERIAC_WORKER_TTL_S="1"
    )
    for i in range(3):
        producer.send_task("itest.wait_for_go", args=(f"t{i}",))
    assert sorted(take(r, "test:started", 3)) == ["t0", "t1", "t2"]  # three children at once
    eventually(lambda: producer.broker.workers()[0].fields.get("children") == "3")
    fields = producer.broker.workers()[0].fields
    assert (fields["concurrency"], fields["autoscale"]) == ("3", "3,1")
    r.rpush("test:go", "go", "go", "go")
    assert len(take(r, "test:finished", 3)) == 3
    w.wait_log("-> 1 slots")
    eventually(lambda: producer.broker.workers()[0].fields.get("children") == "1")
    assert w.log.count("stopping child") >= 2 and "autoscale: fewer children needed" in w.log
    producer.close()
    r.close()


def test_autoscale_bounds() -> None:
    assert Autoscale.parse("10,2") == Autoscale(10, 2)
    assert Autoscale.parse("4") == Autoscale(4, 1)
    for bad in ("2,10", "0", "a,b", "1,2,3", ""):
        with pytest.raises(ValueError):
            Autoscale.parse(bad)
    scale = Autoscale(10, 2)
    assert scale.grow_to(2, 2, 100) == 10
    assert scale.grow_to(2, 2, 3) == 5
    assert scale.grow_to(2, 1, 100) == 2  # a free slot: no backlog to meet
    assert scale.shrink_to(10, 0) == 2 and scale.shrink_to(10, 7) == 7
