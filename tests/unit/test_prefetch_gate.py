"""The prefetch slot gate (worker/prefetch.py): a wait ends at its deadline unless slots are freeing."""

from __future__ import annotations

import asyncio

from celeriac.worker.prefetch import Prefetch, SlotGate


def test_a_freed_slot_goes_to_the_oldest_waiter_and_a_held_one_ends_the_wait_at_the_deadline() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        gate = SlotGate(1, deadline_s=0.01, limit_s=0.05)
        assert gate.try_take() and not gate.try_take()
        first = asyncio.ensure_future(gate.take(loop, loop.time()))
        second = asyncio.ensure_future(gate.take(loop, loop.time()))
        await asyncio.sleep(0)
        gate.release()  # the slot goes to the first waiter, not to a newcomer
        assert await first is True
        assert gate.free == 0 and not gate.try_take()
        assert await second is False  # nothing freed since (a long task holds the slot): it goes back
        gate.release()
        assert gate.free == 1

    asyncio.run(scenario())


def test_a_waiter_behind_flowing_tasks_waits_on_past_the_deadline() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        gate = SlotGate(1, deadline_s=0.1, limit_s=10.0)
        assert gate.try_take()
        fetched = loop.time()
        waiters = [asyncio.ensure_future(gate.take(loop, fetched)) for _ in range(4)]
        for _ in range(4):  # a slot frees every 40 ms: tasks flow, the last waiter starts at ~160 ms
            await asyncio.sleep(0.04)
            gate.release()
        assert [await w for w in waiters] == [True] * 4

    asyncio.run(scenario())


def test_the_settle_linger_is_zero_unless_prefetching_then_bounded() -> None:
    p = Prefetch(2, 500)
    assert p.settle_linger_s() == 0.0
    for i in range(1000):
        p.ran(i * 0.0001)  # 10,000 tasks/s
    assert 0 < p.settle_linger_s() <= 0.01


def test_completions_learned_in_bursts_measure_the_rate_not_the_gaps_within_a_burst() -> None:
    p = Prefetch(8, 500)
    for burst in range(20):  # 8 completions seen at once every 8 ms: 1 ms each, not 0
        for _ in range(8):
            p.ran(burst * 0.008)
    assert 0.0008 < p.mean_s < 0.0012
    assert 9 <= p.extra <= 10  # 10 ms budget / 1 ms (not fetch_max)
