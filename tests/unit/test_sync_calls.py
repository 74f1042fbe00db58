"""Sync tasks on a worker that does not prefetch (the asyncio pool, the default) run without an
asyncio Task per delivery: their calls go straight to the pool's threads (``Worker._start_call``,
``ThreadBackedPool.submit``) and the batched hand-back finishes each run. Outcomes, the request in
the thread, revoke with terminate, blocking tasks beside others and a cold shutdown behave as on the
coroutine path (WorkerShutdown on this path: tests/unit/test_worker_shutdown.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Generator
from typing import Any

import pytest

from celeriac import Celeriac, TaskState, Worker
from celeriac.broker.revoked import Revocation
from celeriac.exceptions import TaskRevokedError
from celeriac.execution import Outcome
from celeriac.result import AsyncResult
from celeriac.testing import drain_async
from celeriac.worker.offload import resolve
from celeriac.worker.pools import ThreadBackedPool


def _app() -> Celeriac:
    return Celeriac(
        "sc", broker="memory://", result_backend="memory://", task_ignore_result=False, from_env=False
    )


class _Runs:
    """Counts the asyncio Tasks made for deliveries (``Worker._execute`` coroutines) on a loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.executes = 0
        self._loop = loop
        self._before = loop.get_task_factory()

    def __enter__(self) -> _Runs:
        def factory(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kw: Any) -> Any:
            if getattr(coro, "__qualname__", "") == "Worker._execute":
                self.executes += 1
            return asyncio.Task(coro, loop=loop, **kw)

        self._loop.set_task_factory(factory)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.set_task_factory(self._before)


@pytest.fixture
def release() -> Generator[threading.Event, None, None]:
    event = threading.Event()
    yield event
    event.set()  # a thread still blocked ends with the test


async def test_sync_tasks_run_without_a_task_per_delivery_with_the_same_outcomes() -> None:
    app = _app()

    @app.task(name="sc.double", bind=True)
    def double(self: Any, x: int) -> tuple[str, int]:
        return self.request.id, x * 2  # the request travels into the thread

    @app.task(name="sc.fail", max_retries=0)
    def fail() -> None:
        raise ValueError("no")

    @app.task(name="sc.coro")
    async def coro() -> str:
        return "async"

    sent = [double.delay(i) for i in range(5)]
    failed = fail.delay()
    outcomes: list[Outcome] = []
    worker = Worker(app, pool="asyncio", concurrency=4, burst=True, on_outcome=outcomes.append)
    with _Runs(asyncio.get_running_loop()) as runs:
        await asyncio.wait_for(worker.run(), 10)
    assert runs.executes == 0  # no coroutine for any of the sync runs
    assert [r.get(timeout=1) for r in sent] == [[r.id, 2 * i] for i, r in enumerate(sent)]
    states = {o.task_id: o.state for o in outcomes}
    assert states[failed.id] is TaskState.FAILURE and worker.stats.failed == 1
    assert worker.stats.succeeded == 5 and worker.pool._by_task == {}  # type: ignore[attr-defined]

    # the counter sees the coroutine path: an async task's run is a Task
    coro.delay()
    worker = Worker(app, pool="asyncio", concurrency=4, burst=True)
    with _Runs(asyncio.get_running_loop()) as runs:
        await asyncio.wait_for(worker.run(), 10)
    assert runs.executes == 1 and worker.stats.succeeded == 1


async def test_a_blocking_sync_task_does_not_hold_the_others(release: threading.Event) -> None:
    app = _app()

    @app.task(name="sc.waits")
    def waits() -> bool:
        return release.wait(10)  # set by the next task, which must run meanwhile

    @app.task(name="sc.sets")
    def sets() -> None:
        release.set()

    first, second = waits.delay(), sets.delay()
    worker = Worker(app, pool="asyncio", concurrency=2, burst=True)
    await asyncio.wait_for(worker.run(), 20)
    assert first.get(timeout=1) is True and second.state == TaskState.SUCCESS


async def _blocked_call(
    release: threading.Event, value: str, **worker_options: Any
) -> tuple[Celeriac, AsyncResult[Any], Worker, asyncio.Future[None], list[Outcome]]:
    """A worker (asyncio pool) running one sync task that blocks until ``release`` is set, then
    returns ``value``: the app, the task's result, the worker, its run and the outcomes it reports."""
    app = _app()
    started = threading.Event()

    @app.task(name="sc.blocks")
    def blocks() -> str:
        started.set()
        release.wait(10)
        return value

    sent = blocks.delay()
    outcomes: list[Outcome] = []
    worker = Worker(app, pool="asyncio", concurrency=2, on_outcome=outcomes.append, **worker_options)
    run = asyncio.ensure_future(worker.run())
    assert await asyncio.to_thread(started.wait, 10)
    return app, sent, worker, run, outcomes


async def test_terminate_ends_a_running_sync_call_revoked(release: threading.Event) -> None:
    _, victim, worker, run, outcomes = await _blocked_call(release, "finished", burst=True)
    # what a fetch or the control loop applies, then acts on
    worker.broker.revocations.add(Revocation(victim.id, int(time.time() * 1000), terminate=True))
    worker.revoking.terminate_pending(worker.inflight.running_runs)
    # the run ended at once (the thread goes on until its wait returns: abandoned meanwhile)
    assert worker.inflight.running == 0
    release.set()
    await asyncio.wait_for(run, 10)
    assert [(o.task_id, o.state) for o in outcomes] == [(victim.id, TaskState.REVOKED)]
    assert worker.stats.revoked == 1 and worker.pool._by_task == {}  # type: ignore[attr-defined]


async def test_a_cold_shutdown_hands_a_running_sync_call_back(release: threading.Event) -> None:
    app, _held, worker, run, outcomes = await _blocked_call(release, "too late")
    worker.stop(cold=True)
    await asyncio.wait_for(run, 10)
    release.set()  # its thread ends now; its value is nobody's any more
    assert outcomes == [] and worker.stats.processed == 0
    stats = app.broker.stats("default")
    assert (stats.running, stats.ready) == (1, 0)  # handed back started: its lease expired at once
    done = await drain_async(app, ["default"])  # so the next worker reclaims it and runs it again
    assert [o.value for o in done.outcomes] == ["too late"]


# ---- the pool's side ---------------------------------------------------------------------------------
async def test_submit_hands_values_and_errors_to_then_on_the_loop() -> None:
    pool = ThreadBackedPool(2)
    await pool.start()
    loop = asyncio.get_running_loop()
    got: list[tuple[Any, Any, bool]] = []
    dones = [loop.create_future() for _ in range(3)]

    def then(done: asyncio.Future[None], value: Any, error: BaseException | None) -> None:
        got.append((value, type(error), threading.current_thread() is threading.main_thread()))
        done.set_result(None)

    def boom() -> None:
        raise KeyError("k")

    pool.submit(lambda: 1, dones[0], lambda v, e: then(dones[0], v, e), key="a")
    pool.submit(boom, dones[1], lambda v, e: then(dones[1], v, e), key="b")
    pool.submit(lambda: 3, dones[2], lambda v, e: then(dones[2], v, e))
    await asyncio.wait_for(asyncio.gather(*dones), 10)
    assert sorted(got, key=repr) == sorted(
        [(1, type(None), True), (None, KeyError, True), (3, type(None), True)], key=repr
    )
    assert pool._by_task == {}
    await pool.close(cold=False)


async def test_a_submitted_call_cancelled_before_a_thread_took_it_never_runs(
    release: threading.Event,
) -> None:
    pool = ThreadBackedPool(1)
    await pool.start()
    loop = asyncio.get_running_loop()
    ran: list[str] = []
    ended: list[str] = []
    first, second = loop.create_future(), loop.create_future()

    def block() -> None:
        ran.append("first")
        release.wait(10)

    def first_ended(value: Any, error: BaseException | None) -> None:
        ended.append("first")
        first.set_result(None)

    pool.submit(block, first, first_ended)
    pool.submit(lambda: ran.append("second"), second, lambda v, e: ended.append("second"))
    second.cancel()  # what a shutdown does to a run: the only thread is busy, the call still queued
    release.set()
    await asyncio.wait_for(first, 10)
    assert await asyncio.to_thread(_idle, pool)
    assert ran == ["first"] and ended == ["first"]
    await pool.close(cold=False)


async def test_terminate_of_a_submitted_call_fails_it_at_once(release: threading.Event) -> None:
    pool = ThreadBackedPool(1)
    await pool.start()
    loop = asyncio.get_running_loop()
    started = threading.Event()
    done: asyncio.Future[None] = loop.create_future()
    got: list[Any] = []

    def block() -> str:
        started.set()
        release.wait(10)
        return "late"

    def then(value: Any, error: BaseException | None) -> None:
        got.append(error if error is not None else value)
        done.set_result(None)

    pool.submit(block, done, then, key="t1")
    assert await asyncio.to_thread(started.wait, 10)
    assert pool.terminate("t1", "SIGTERM")
    assert done.done() and len(got) == 1 and isinstance(got[0], TaskRevokedError)
    assert pool._by_task == {} and pool.abandoned == 1
    release.set()  # the abandoned thread returns; its value is dropped (then is not called again)
    await asyncio.to_thread(_until, lambda: pool.abandoned == 0)
    await asyncio.sleep(0)
    assert len(got) == 1
    await pool.close(cold=False)


def _idle(pool: ThreadBackedPool) -> bool:
    return _until(lambda: pool._idle == pool._started and pool._queued == 0)


def _until(cond: Any) -> bool:
    deadline = time.monotonic() + 10
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.001)
    return bool(cond())


async def test_a_failing_hand_back_does_not_strand_the_rest_of_its_batch(caplog: Any) -> None:
    loop = asyncio.get_running_loop()
    first, second, awaited = loop.create_future(), loop.create_future(), loop.create_future()
    got: list[Any] = []

    def bad(value: Any, error: BaseException | None) -> None:
        first.set_result(None)
        raise RuntimeError("a bug in the hand-back")

    def good(value: Any, error: BaseException | None) -> None:
        got.append(value)
        second.set_result(None)

    resolve([(first, 1, None, bad), (second, 2, None, good), (awaited, 3, None, None)])
    assert got == [2] and awaited.result() == 3
    assert "could not be handed back" in caplog.text
