"""The threads pool's bookkeeping per sync call: three sections under its lock (the call put, taken,
and done with its result handed to the loop's batch), and counts that add up once calls finish,
whatever way each one ended (value, exception, cancelled before a thread took it)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from celeriac.worker.pools import ThreadBackedPool
from celeriac.worker.slotgate import NotStarted, SlotGate


class CountingLock:
    """A ``threading.Lock`` that counts how often it was taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken = 0

    def __enter__(self) -> bool:
        self._lock.acquire()
        self.taken += 1
        return True

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()


def _pool(threads: int) -> tuple[ThreadBackedPool, CountingLock]:
    pool = ThreadBackedPool(threads)
    lock = CountingLock()
    pool._lock = pool._batch._lock = lock  # type: ignore[assignment]
    return pool, lock


def _settled(pool: ThreadBackedPool) -> None:
    """Every thread back waiting: idle, nothing queued or busy."""
    deadline = time.monotonic() + 5
    while pool._idle != pool._started and time.monotonic() < deadline:
        time.sleep(0.001)
    assert (pool._idle, pool._queued, pool._busy, pool._abandoned) == (pool._started, 0, 0, 0)


async def test_a_sync_call_takes_the_lock_three_times() -> None:
    pool, lock = _pool(1)
    await pool.start()
    assert await pool.run_sync(lambda: 1) == 1  # the thread starts (its first section is not per call)
    _settled(pool)
    n = 200
    before = lock.taken
    for i in range(n):
        assert await pool.run_sync(lambda i=i: i * 2) == i * 2
    _settled(pool)
    per_call = (lock.taken - before) / n
    # put, taken, done (with the hand-back to the batch); plus the loop collecting each batch
    assert per_call <= 4
    assert per_call >= 3
    await pool.close(cold=False)


async def test_counts_add_up_after_values_errors_and_concurrent_calls() -> None:
    pool, _lock = _pool(4)
    await pool.start()

    def fails() -> None:
        raise ValueError("no")

    values = await asyncio.gather(*(pool.run_sync(lambda i=i: i) for i in range(100)))
    assert values == list(range(100))
    with pytest.raises(ValueError):
        await pool.run_sync(fails)
    assert pool._started <= 4
    _settled(pool)
    await pool.close(cold=False)


async def test_a_call_cancelled_before_a_thread_took_it_never_runs() -> None:
    pool, _lock = _pool(1)
    await pool.start()
    release = threading.Event()
    ran: list[str] = []
    first = asyncio.ensure_future(pool.run_sync(lambda: release.wait(5)))
    await asyncio.sleep(0.05)  # the only thread is busy with it
    second = asyncio.ensure_future(pool.run_sync(lambda: ran.append("second")))
    await asyncio.sleep(0.01)
    second.cancel()
    release.set()
    assert await first is True
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await pool.run_sync(lambda: "third") == "third"
    assert ran == []
    _settled(pool)
    await pool.close(cold=False)


async def test_a_thread_that_finishes_a_call_takes_the_next_queued_one_without_the_loop() -> None:
    """Calls queued behind a busy thread run one after the other in that thread while the loop is
    blocked: no hand-back (and no loop turn) between them."""
    pool, _lock = _pool(1)
    await pool.start()
    hold, all_ran = threading.Event(), threading.Event()
    ran: list[str] = []

    def last() -> None:
        ran.append("c")
        all_ran.set()

    calls = [
        asyncio.ensure_future(pool.run_sync(lambda: hold.wait(5))),
        asyncio.ensure_future(pool.run_sync(lambda: ran.append("b"))),
        asyncio.ensure_future(pool.run_sync(last)),
    ]
    await asyncio.sleep(0)  # the three calls are queued; the only thread holds the first
    hold.set()
    assert all_ran.wait(5)  # the loop is blocked here: it hands nothing back meanwhile
    assert ran == ["b", "c"]
    assert [c.done() for c in calls] == [False, False, False]
    assert await asyncio.gather(*calls) == [True, None, None]
    _settled(pool)
    await pool.close(cold=False)


async def test_a_queued_call_withdrawn_at_its_start_deadline_never_runs() -> None:
    pool, _lock = _pool(1)
    await pool.start()
    loop = asyncio.get_running_loop()
    gate = SlotGate(1, deadline_s=0.01, limit_s=0.01)
    assert gate.try_take()
    hold = threading.Event()
    ran: list[str] = []
    first = asyncio.ensure_future(pool.run_sync(lambda: hold.wait(5)))
    wait = gate.enqueue(loop, loop.time())
    queued = asyncio.ensure_future(pool.run_queued(lambda: ran.append("queued"), admission=wait))
    with pytest.raises(NotStarted):  # nothing freed the slot by its deadline: withdrawn
        await queued
    assert wait.ended and not wait.admitted
    hold.set()
    assert await first is True
    assert await pool.run_sync(lambda: "next") == "next"
    assert ran == []  # the thread took the withdrawn call and skipped it
    _settled(pool)
    await pool.close(cold=False)


async def test_a_queued_call_a_thread_took_is_not_withdrawn_at_its_deadline() -> None:
    pool, _lock = _pool(1)
    await pool.start()
    loop = asyncio.get_running_loop()
    gate = SlotGate(1, deadline_s=0.01, limit_s=0.01)
    assert gate.try_take()
    started, hold = threading.Event(), threading.Event()

    def queued_call() -> str:
        started.set()
        hold.wait(5)
        return "ran"

    wait = gate.enqueue(loop, loop.time())
    queued = asyncio.ensure_future(pool.run_queued(queued_call, admission=wait))
    await loop.run_in_executor(None, started.wait, 5)  # a thread took it, ahead of its slot
    await asyncio.sleep(0.05)  # its deadline passed meanwhile
    assert not wait.done()
    gate.release()  # the slot it runs in comes with the next release
    assert wait.admitted
    hold.set()
    assert await queued == "ran"
    _settled(pool)
    await pool.close(cold=False)
