"""The prefetch bound reads a processes-pool task's own run time (the child's), not the worker's time
to notice its end: on a busy machine that latency doubled a 5 ms task's measured time, passed the
10 ms budget and stopped prefetching (benchmarks/README.md, ``pools.py --cpu``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from celeriac import Celeriac, Worker
from celeriac.execution import Execution, Job
from celeriac.task import SendOptions
from celeriac.worker.limits import NO_LIMITS, TimeLimits
from celeriac.worker.process.pool import ProcessPool


@pytest.fixture
async def pool() -> AsyncIterator[tuple[Celeriac, ProcessPool]]:
    app = Celeriac("pool-runtime", broker="memory://")

    @app.task(name="t.nap")
    def nap(seconds: float) -> None:
        time.sleep(seconds)

    pool = ProcessPool(app, 1)  # tasks defined here: the fork server is forked from this process
    await pool.start()
    try:
        yield app, pool
    finally:
        await pool.close(cold=True)
        app.close()


def job(app: Celeriac, *args: Any) -> Job:
    message = app.tasks["t.nap"].build_message(args, {}, SendOptions())
    prepared = Execution(app).prepare(app.codec.encode(message))
    assert isinstance(prepared, Job)
    return prepared


async def test_a_run_carries_the_childs_run_time_of_the_task(pool: tuple[Celeriac, ProcessPool]) -> None:
    app, processes = pool
    napping = job(app, 0.05)
    assert napping.ran_s is None
    await processes.run(napping, NO_LIMITS)
    assert napping.ran_s is not None and napping.ran_s >= 0.05  # the child's own measure of its sleep
    # a run the child never answered (killed at its hard limit) carries none: the worker then counts
    # the run's time in its slot, as for the other pools
    killed = job(app, 30.0)
    with pytest.raises(Exception, match="time limit"):
        await processes.run(killed, TimeLimits(hard_s=0.2))
    assert killed.ran_s is None


async def test_the_worker_hands_the_pools_run_time_to_the_prefetch_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = Celeriac("pool-runtime-worker", broker="memory://")

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    worker = Worker(app, pool="threads", concurrency=1, burst=True)
    assert worker.prefetch.enabled  # a prefetching worker times its runs
    real_run = worker.pool.run

    async def run(job: Job, limits: TimeLimits) -> Any:
        value = await real_run(job, limits)
        job.ran_s = 123.0  # as the processes pool sets it from its child's answer
        return value

    timed: list[float] = []
    real_ran = worker.prefetch.ran

    def ran(now_s: float, run_s: float = 0.0) -> None:
        timed.append(run_s)
        real_ran(now_s, run_s)

    monkeypatch.setattr(worker.prefetch, "ran", ran)
    monkeypatch.setattr(worker.pool, "run", run)
    for i in range(3):
        add.delay(i, i)
    await asyncio.wait_for(worker.run(), 10)
    assert timed == [123.0] * 3
