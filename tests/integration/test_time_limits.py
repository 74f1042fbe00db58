"""Soft and hard time limits on the in-process pools (asyncio, threads), on a real Redis.

Tasks wait on events (asyncio.Event, threading.Event) rather than sleeping for a fixed time, so each
test takes about as long as the limits it sets (0.2-0.3 s).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celeriac, SoftTimeLimitExceeded, TaskState, TimeLimitExceeded
from celeriac.worker.limits import TimeLimits

pytestmark = pytest.mark.redis

POOLS = ["asyncio", "threads"]


@pytest.fixture
def app(redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("limits", broker=redis_url, lease_s=2.0)
    yield app
    app.close()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown: lets threads abandoned by a test end."""
    event = threading.Event()
    yield event
    event.set()


@pytest.mark.parametrize("pool", POOLS)
def test_soft_limit_raises_inside_a_coroutine(app: Celeriac, thread_worker: Any, pool: str) -> None:
    @app.task(ignore_result=False, soft_time_limit=0.2)
    async def slow() -> str:
        try:
            await asyncio.Event().wait()  # never set
        except SoftTimeLimitExceeded:
            await asyncio.sleep(0)  # the coroutine can still await while it cleans up
            return "cleaned up"
        return "not reached"

    thread_worker(app, pool=pool)
    assert slow.delay().get(timeout=10) == "cleaned up"


@pytest.mark.parametrize("pool", POOLS)
def test_hard_limit_cancels_a_coroutine(app: Celeriac, thread_worker: Any, pool: str) -> None:
    finally_ran: list[bool] = []

    @app.task(ignore_result=False, time_limit=0.2)
    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            finally_ran.append(True)

    thread_worker(app, pool=pool)
    result = stuck.delay()
    started = time.monotonic()
    with pytest.raises(TimeLimitExceeded, match=r"time limit \(0.2s\) exceeded"):
        result.get(timeout=10)
    assert time.monotonic() - started < 5
    assert finally_ran == [True]
    assert result.state is TaskState.FAILURE


@pytest.mark.parametrize("pool", POOLS)
def test_soft_limit_raises_inside_a_sync_task_in_a_thread(
    app: Celeriac, thread_worker: Any, pool: str, release: threading.Event
) -> None:
    @app.task(ignore_result=False, soft_time_limit=0.2)
    def busy() -> str:
        try:
            while not release.is_set():  # Python code between short waits: interruptible
                release.wait(0.005)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "not reached"

    thread_worker(app, pool=pool)
    assert busy.delay().get(timeout=10) == "cleaned up"


@pytest.mark.parametrize("pool", POOLS)
def test_hard_limit_fails_a_sync_task_and_abandons_its_thread(
    app: Celeriac, thread_worker: Any, pool: str, release: threading.Event, caplog: Any
) -> None:
    finished = threading.Event()

    @app.task(ignore_result=False, time_limit=0.2)
    def blocked() -> None:
        release.wait(30)  # one blocking call: nothing can interrupt it
        finished.set()

    @app.task(ignore_result=False)
    def add(x: int, y: int) -> int:
        return x + y

    caplog.set_level(logging.WARNING, logger="celeriac.worker")
    w = thread_worker(app, pool=pool, concurrency=1)
    assert "cannot enforce a hard time limit on sync tasks" in caplog.text  # said at start-up
    with pytest.raises(TimeLimitExceeded):
        blocked.delay().get(timeout=10)
    assert w.worker.pool.abandoned == 1
    # the slot is free again although the thread still runs: the only slot runs the next task
    assert add.delay(1, 2).get(timeout=10) == 3
    release.set()
    assert finished.wait(10)
    w.wait_outcomes(lambda outs: len(outs) == 2)
    deadline = time.monotonic() + 10
    while w.worker.pool.abandoned:  # the abandoned thread ends on its own once the function returns
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stats = app.broker.stats("default")
    assert (stats.ready, stats.running, stats.dead) == (0, 0, 0)


@pytest.mark.parametrize("pool", POOLS)
def test_per_call_limit_overrides_the_task_and_worker_defaults_apply(
    app: Celeriac, thread_worker: Any, pool: str
) -> None:
    @app.task(ignore_result=False, time_limit=30)
    async def wait(label: str) -> str:
        await asyncio.Event().wait()
        return label

    @app.task(ignore_result=False)
    async def unlimited_by_task() -> None:
        await asyncio.Event().wait()

    thread_worker(app, pool=pool, limits=TimeLimits(hard_s=0.2))
    with pytest.raises(TimeLimitExceeded, match=r"\(0.1s\)"):
        wait.apply_async(("x",), time_limit=0.1).get(timeout=10)
    with pytest.raises(TimeLimitExceeded, match=r"\(0.2s\)"):  # the worker's default
        unlimited_by_task.delay().get(timeout=10)


@pytest.mark.parametrize("pool", POOLS)
def test_a_hard_limited_task_follows_its_retry_policy(app: Celeriac, thread_worker: Any, pool: str) -> None:
    @app.task(
        bind=True,
        ignore_result=False,
        time_limit=0.2,
        autoretry_for=(TimeLimitExceeded,),
        max_retries=2,
        default_retry_delay=0,
    )
    async def flaky(self: Any) -> int:
        if self.request.retries == 0:
            await asyncio.Event().wait()  # the first run hits the limit
        return self.request.retries

    w = thread_worker(app, pool=pool)
    assert flaky.delay().get(timeout=10) == 1
    outcomes = w.wait_outcomes(lambda outs: len(outs) == 2)
    assert outcomes[0].kind == "retry" and isinstance(outcomes[0].exc, TimeLimitExceeded)


def test_limits_must_be_positive(app: Celeriac) -> None:
    with pytest.raises(ValueError, match="time_limit"):

        @app.task(time_limit=0)
        def bad() -> None: ...

    @app.task
    def ok() -> None: ...

    with pytest.raises(ValueError, match="soft_time_limit"):
        ok.apply_async(soft_time_limit=-1)
    with pytest.raises(ValueError):
        TimeLimits(soft_s=0)
