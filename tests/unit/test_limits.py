"""Time limit mechanics without Redis: the coroutine limiter and the thread pool's soft/hard limits."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from celeriac import SoftTimeLimitExceeded, TimeLimitExceeded
from celeriac.worker.limits import TimeLimits, _Limited, run_coroutine
from celeriac.worker.pools import ThreadBackedPool


async def test_soft_limit_is_raised_at_the_await_and_the_coroutine_goes_on() -> None:
    async def body() -> str:
        try:
            await asyncio.sleep(30)
        except SoftTimeLimitExceeded:
            await asyncio.sleep(0.01)  # may still await after the soft limit
            return "cleaned"
        return "no"

    assert await run_coroutine(body(), TimeLimits(soft_s=0.05), "t") == "cleaned"
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0  # the limiter's cancellation was taken back


async def test_hard_limit_cancels_runs_finally_and_raises_time_limit_exceeded() -> None:
    ran: list[str] = []

    async def body() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            ran.append("finally")

    with pytest.raises(TimeLimitExceeded, match=r"t: time limit \(0.05s\)"):
        await run_coroutine(body(), TimeLimits(hard_s=0.05), "t")
    assert ran == ["finally"]


async def test_a_coroutine_that_swallows_the_hard_cancellation_still_fails() -> None:
    async def body() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "swallowed"
        return "no"

    with pytest.raises(TimeLimitExceeded):
        await run_coroutine(body(), TimeLimits(hard_s=0.05), "t")


async def test_soft_then_hard() -> None:
    seen: list[str] = []

    async def body() -> None:
        try:
            await asyncio.sleep(30)
        except SoftTimeLimitExceeded:
            seen.append("soft")
            await asyncio.sleep(30)  # ignores the soft limit

    with pytest.raises(TimeLimitExceeded):
        await run_coroutine(body(), TimeLimits(soft_s=0.03, hard_s=0.1), "t")
    assert seen == ["soft"]


async def test_both_limits_passing_while_the_loop_was_blocked_fail_the_run_hard() -> None:
    # Regression (the gevent stuck task): a loop blocked past both limits (a gevent hub kept busy by
    # CPU-bound code) fires soft and hard in one iteration. Both cancellations are the limiter's: the
    # run must fail with TimeLimitExceeded, not end as a bare cancellation that no outcome follows.
    async def body() -> str:
        await asyncio.sleep(0.5)
        return "slept"

    # runs once the limiter armed its timers: blocks past both limits, which then fire together
    asyncio.get_running_loop().call_soon(time.sleep, 0.2)
    with pytest.raises(TimeLimitExceeded):
        await run_coroutine(body(), TimeLimits(soft_s=0.05, hard_s=0.1), "t")
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0  # both of the limiter's cancellations were taken back


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 cannot tell two cancellations apart")
async def test_a_shutdown_cancellation_is_never_mistaken_for_a_soft_limit() -> None:
    started = asyncio.Event()
    holder: list[_Limited] = []

    async def body() -> None:
        started.set()
        await asyncio.sleep(30)

    async def runner() -> None:
        task = asyncio.current_task()
        assert task is not None
        holder.append(_Limited(body(), task, "t", TimeLimits(soft_s=30)))
        await holder[0]

    task = asyncio.create_task(runner())
    await started.wait()
    holder[0].fire("soft")  # the soft limit and a shutdown in the same loop iteration:
    task.cancel()  # one CancelledError arrives, and the shutdown must win
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_limits_is_a_plain_await() -> None:
    async def body() -> int:
        return 7

    assert await run_coroutine(body(), TimeLimits(), "t") == 7


async def test_thread_soft_limit_interrupts_python_code() -> None:
    pool = ThreadBackedPool(2)
    await pool.start()

    def spin() -> str:
        try:
            while True:
                time.sleep(0.001)
        except SoftTimeLimitExceeded:
            return "interrupted"

    assert await pool.run_sync(spin, TimeLimits(soft_s=0.05), "spin") == "interrupted"
    await pool.close(cold=False)


async def test_thread_hard_limit_abandons_the_thread_and_a_new_one_serves() -> None:
    pool = ThreadBackedPool(1)
    await pool.start()
    gate = threading.Event()
    with pytest.raises(TimeLimitExceeded):
        await pool.run_sync(lambda: gate.wait(30), TimeLimits(hard_s=0.05), "stuck")
    assert pool.abandoned == 1
    assert await pool.run_sync(lambda: 42) == 42  # a replacement thread
    gate.set()
    deadline = time.monotonic() + 5
    while pool.abandoned or pool.busy_threads:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    await pool.close(cold=False)


async def test_soft_limits_landing_at_the_end_of_calls_never_break_the_pool() -> None:
    """Many calls whose soft limit passes right as they return: each call resolves exactly once, with
    its value or SoftTimeLimitExceeded, and every thread keeps serving (no stray exception escapes)."""
    pool = ThreadBackedPool(4)
    await pool.start()

    def work(n: int) -> int:
        deadline = time.perf_counter() + 0.002
        while time.perf_counter() < deadline:
            pass
        return n

    calls = [pool.run_sync(lambda n=n: work(n), TimeLimits(soft_s=0.002), f"c{n}") for n in range(400)]
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 60)
    assert len(results) == 400
    assert all(r == n or isinstance(r, SoftTimeLimitExceeded) for n, r in enumerate(results)), results
    assert pool.busy_threads == 0
    assert await pool.run_sync(lambda: "still serving") == "still serving"
    await pool.close(cold=False)
