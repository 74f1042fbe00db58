"""The processes pool's own queue of calls (``queues_calls``; ``SlotGate.enqueue``).

A prefetched run waiting for a slot hands its call to the pool at once; the reader of the socket of
the child that answers next sends it, in the same turn of the loop as the answer. At its start
deadline the call is withdrawn (never run: ``NotStarted``) unless a child took it. Real children (a
fork server forked from this process); the waits are built by hand, without the gate's timers, so
that only the test decides when a deadline passes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celeriac
from celeriac.execution import Execution, Job
from celeriac.task import SendOptions
from celeriac.worker.limits import NO_LIMITS
from celeriac.worker.process.pool import ProcessPool
from celeriac.worker.slotgate import NotStarted, QueuedWait


class Setup:
    def __init__(self, app: Celeriac, pool: ProcessPool, go: Path, ran: Path) -> None:
        self.app, self.pool, self.go, self.ran = app, pool, go, ran
        self.execution = Execution(app)

    def job(self, name: str, *args: Any, wait: QueuedWait | None = None) -> Job:
        message = self.app.tasks[name].build_message(args, {}, SendOptions())
        job = self.execution.prepare(self.app.codec.encode(message))
        assert isinstance(job, Job)
        job.admission = wait
        return job

    def ran_tags(self) -> list[str]:
        return sorted(os.listdir(self.ran))


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    app = Celeriac("pool-queue", broker="memory://")
    go, ran = tmp_path / "go", tmp_path / "ran"
    ran.mkdir()

    @app.task(name="t.hold")
    def hold() -> int:
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:  # until the test lets it finish
            time.sleep(0.002)
        return os.getpid()

    @app.task(name="t.mark")
    def mark(tag: str) -> int:
        (ran / tag).touch()
        return os.getpid()

    pool = ProcessPool(app, 1)  # tasks defined here: the fork server is forked from this process
    await pool.start()
    try:
        yield Setup(app, pool, go, ran)
    finally:
        await pool.close(cold=True)
        app.close()


def a_wait() -> QueuedWait:
    loop = asyncio.get_running_loop()
    return QueuedWait(loop.time(), loop.time() + 60, 0.0)


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (no timing assert: the test's timeout bounds it)."""
    while not condition():
        await asyncio.sleep(0.001)


async def test_a_queued_call_goes_to_the_child_that_answers_and_a_taken_one_is_not_withdrawn(
    setup: Setup,
) -> None:
    pool = setup.pool
    holding = asyncio.ensure_future(pool.run(setup.job("t.hold"), NO_LIMITS))
    await until(lambda: not pool._idle)  # the only child runs the hold task
    wait = a_wait()
    run = asyncio.ensure_future(pool.run(setup.job("t.mark", "b", wait=wait), NO_LIMITS))
    await asyncio.sleep(0)  # the run queued its call
    assert wait.pool is pool and not wait.started()
    assert len(pool._queue) == 1
    setup.go.touch()
    pid = await holding
    # the answer's reader sent the queued call before the finished run learnt its value
    assert wait.started() and not pool._queue
    wait.set_result(False)  # its start deadline, after a child took it: not withdrawn, it runs
    assert not wait.ended
    assert await run == pid
    assert setup.ran_tags() == ["b"]


async def test_a_queued_call_withdrawn_at_its_deadline_or_cancelled_never_runs(setup: Setup) -> None:
    pool = setup.pool
    holding = asyncio.ensure_future(pool.run(setup.job("t.hold"), NO_LIMITS))
    await until(lambda: not pool._idle)
    late, cancelled, next_one = a_wait(), a_wait(), a_wait()
    runs = [
        asyncio.ensure_future(pool.run(setup.job("t.mark", tag, wait=wait), NO_LIMITS))
        for tag, wait in (("late", late), ("cancelled", cancelled), ("next", next_one))
    ]
    await asyncio.sleep(0)
    assert len(pool._queue) == 3
    late.set_result(False)  # its start deadline: no child took it
    assert late.ended
    with pytest.raises(NotStarted):
        await runs[0]
    runs[1].cancel()  # a cold shutdown's cancellation of a run still queued
    with pytest.raises(asyncio.CancelledError):
        await runs[1]
    assert len(pool._queue) == 1  # both taken out of it
    setup.go.touch()
    pid = await holding
    assert await runs[2] == pid  # the child went to the one call still queued
    assert setup.ran_tags() == ["next"]  # the withdrawn and the cancelled calls never ran
    # a call whose wait ended before it reached the pool is not queued at all
    ended = a_wait()
    ended.set_result(False)
    with pytest.raises(NotStarted):
        await pool.run(setup.job("t.mark", "never", wait=ended), NO_LIMITS)
    assert not pool._queue
    assert setup.ran_tags() == ["next"]


async def test_a_queued_call_reaches_a_free_child_at_once_and_close_ends_those_still_queued(
    setup: Setup,
) -> None:
    pool = setup.pool
    wait = a_wait()
    # a free child: the call is sent at once, never queued
    assert await pool.run(setup.job("t.mark", "free", wait=wait), NO_LIMITS) > 0
    assert wait.started()
    holding = asyncio.ensure_future(pool.run(setup.job("t.hold"), NO_LIMITS))
    await until(lambda: not pool._idle)
    queued = asyncio.ensure_future(pool.run(setup.job("t.mark", "queued", wait=a_wait()), NO_LIMITS))
    await asyncio.sleep(0)
    assert len(pool._queue) == 1
    closing = asyncio.ensure_future(pool.close(cold=True))  # kills the busy child; queued calls end
    with pytest.raises(asyncio.CancelledError):
        await queued
    await closing
    holding.cancel()
    await asyncio.gather(holding, return_exceptions=True)
    assert setup.ran_tags() == ["free"]
