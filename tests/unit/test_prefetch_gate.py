"""The prefetch slot gate (worker/prefetch.py): a wait ends at its deadline unless slots are freeing."""

from __future__ import annotations

import asyncio
from typing import Any

from celeriac.worker.prefetch import _RUN_WARM_UP, MIN_EXTRA, Prefetch
from celeriac.worker.slotgate import SlotGate


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


def test_pass_on_hands_the_slot_to_the_oldest_waiter_before_the_run_releases_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        gate = SlotGate(1, deadline_s=10.0, limit_s=10.0)
        assert gate.try_take()  # run A holds the only slot
        assert gate.pass_on() is False  # nobody waits: nothing to hand on, A's release frees it
        gate.release()
        assert gate.free == 1 and gate.passed == 0
        assert gate.try_take()
        waiter = asyncio.ensure_future(gate.take(loop, loop.time()))
        await asyncio.sleep(0)
        assert gate.pass_on() is True  # A's task ended (its child answered): B gets the slot now
        assert await waiter is True
        assert (gate.free, gate.passed) == (0, 1)
        gate.release()  # A's run ends: the slot was handed on already, nothing is freed
        assert (gate.free, gate.passed) == (0, 0)
        gate.release()  # B's run ends: the slot is free again
        assert (gate.free, gate.passed) == (1, 0)

    asyncio.run(scenario())


def _short_tasks_flowing(p: Prefetch, now_s: float, run_s: float = 0.001) -> None:
    """Completions every 1 ms up to ``now_s``, each task ``run_s`` in its slot."""
    for i in range(200):
        p.ran(now_s - 0.2 + i * 0.001, run_s)


def test_an_idle_worker_or_one_whose_slots_all_hold_long_tasks_fetches_for_free_slots_only() -> None:
    p = Prefetch(2, 500)
    _short_tasks_flowing(p, 100.0)
    assert p.extra == 10  # measured short: 10 ms budget / 1 ms between completions
    assert p.to_fetch(0, 100.0) == 12  # flowing: the free slots and the extra
    # 50 ms later no run has ended: the worker is idle, or long tasks hold its slots
    assert p.to_fetch(0, 100.05) == 2  # free slots only
    assert p.to_fetch(2, 100.05) == 0  # both slots busy: nothing is fetched to wait behind them
    assert not p.refill_wanted(2, 100.05)


def test_a_busy_pool_of_short_tasks_fetches_two_at_a_time_and_refills_its_buffer_late() -> None:
    p = Prefetch(2, 500)
    for i in range(_RUN_WARM_UP):  # short runs timed, but too few for a measured buffer
        p.ran(1.0 + i * 0.001, 0.001)
    assert p.extra == 0
    assert p.to_fetch(1, p.last_ran_s) == 2  # one slot freed: two fetched, not one
    assert p.to_fetch(2, p.last_ran_s) == 0  # no slot free: a single message is not worth a fetch
    p = Prefetch(2, 500)
    _short_tasks_flowing(p, 100.0)
    assert p.extra == 10
    # 2 slots and 10 extra: the buffer is refilled when three quarters of it are gone
    assert p.to_fetch(2 + 5, 100.0) == 0 and not p.refill_wanted(2 + 5, 100.0)
    assert p.to_fetch(2 + 2, 100.0) == 8 and p.refill_wanted(2 + 2, 100.0)
    assert p.to_fetch(1, 100.0) == 11  # a free slot is always filled (with the extra)


def test_tasks_slower_than_the_budget_are_never_prefetched() -> None:
    p = Prefetch(8, 500)
    for i in range(400):  # 8 slots of 20 ms tasks: a completion every 2.5 ms (fast enough alone)
        p.ran(i * 0.0025, 0.02)
    assert p.mean_s < 0.003 and p.run_mean_s > p.budget_s
    assert p.extra == 0
    assert p.to_fetch(7, p.last_ran_s) == 1  # the free slot only, not even one more
    assert p.to_fetch(8, p.last_ran_s) == 0
    for i in range(100):  # the tasks became short again: prefetch resumes
        p.ran(1.0 + i * 0.0005, 0.0005)
    assert p.extra > 0 and p.to_fetch(8, p.last_ran_s) > 1


def test_a_missed_start_forgets_the_run_time_too() -> None:
    p = Prefetch(2, 500)
    _short_tasks_flowing(p, 100.0)
    p.missed_start()
    assert (p.extra, p.timed, p.run_mean_s) == (0, 0, 0.0)
    assert p.to_fetch(2, p.last_ran_s) == 0  # busy and nothing measured: not even one more


def test_a_busy_pool_of_tasks_too_slow_to_prefetch_still_settles_in_batches_but_not_after_a_pause() -> None:
    p = Prefetch(2, 500)
    for i in range(400):  # 2 children, 9 ms runs: a completion every 4.5 ms
        p.ran(i * 0.0045, 0.009)
    assert p.extra > 0
    for _ in range(40):  # a loaded machine stretched the runs beyond the start deadline: no prefetch
        p.ran(p.last_ran_s + 0.0045, 0.03)
    assert p.slow and p.extra == 0
    assert 0 < p.settle_linger_s() <= 0.01  # outcomes still wait for each other, 10 ms at most
    p.ran(p.last_ran_s + 5.0, 0.009)  # the first outcome after a pause: recorded at once
    assert p.settle_linger_s() == 0.0


def _runs(p: Prefetch, n: int, interval_s: float, run_s: float) -> None:
    """``n`` completions ``interval_s`` apart after the last one, each run ``run_s`` in its slot."""
    start = p.last_ran_s if p.timed else 100.0
    for i in range(1, n + 1):
        p.ran(start + i * interval_s, run_s)


def test_a_busy_pool_of_two_keeps_a_buffer_that_a_read_refills_before_it_runs_dry() -> None:
    p = Prefetch(2, 500)
    _runs(p, 200, 0.0036, 0.0072)  # 2 children, 7 ms runs: 10 ms of budget hold 2 completions
    assert int(p.budget_s / p.mean_s) == 2
    assert p.extra == MIN_EXTRA == 4  # not 2: that buffer was refilled only once empty
    now = p.last_ran_s
    assert p.to_fetch(2 + 2, now) == 0  # two still queued: no read yet
    assert p.to_fetch(2 + 1, now) == 3  # one left, queued while the read of three is on its way
    p = Prefetch(2, 500)
    _runs(p, 200, 0.008, 0.009)  # a completion every 8 ms: only two start within the start deadline
    assert p.extra == 2


def test_prefetch_stops_when_runs_exceed_the_start_deadline_and_resumes_within_the_budget() -> None:
    p = Prefetch(2, 500)
    _runs(p, 200, 0.008, 0.015)  # 15 ms runs from the start: beyond the budget, never prefetched
    assert p.slow and p.extra == 0
    p = Prefetch(2, 500)
    _runs(p, 200, 0.003, 0.006)  # 6 ms runs: prefetched
    assert not p.slow and p.extra > 0
    _runs(p, 100, 0.006, 0.012)  # a busy machine stretches them to 12 ms: still prefetched
    assert 0.01 < p.run_mean_s < 0.02 and not p.slow and p.extra > 0
    _runs(p, 100, 0.0125, 0.025)  # 25 ms: beyond the start deadline, prefetch stops
    assert p.slow and p.extra == 0
    _runs(p, 100, 0.006, 0.012)  # back to 12 ms: not yet (above the budget)
    assert p.slow and p.extra == 0
    _runs(p, 100, 0.003, 0.006)  # within the budget again: prefetch resumes
    assert not p.slow and p.extra > 0


class _Calls:
    """A pool's call queue as the gate sees it (CallQueue): which calls threads took, which were
    withdrawn."""

    def __init__(self) -> None:
        self.taken_calls: set[int] = set()
        self.withdrawn: list[int] = []

    def taken(self, call: Any) -> bool:
        return call in self.taken_calls

    def withdraw(self, call: Any) -> bool:
        if call in self.taken_calls:
            return False
        self.withdrawn.append(call)
        return True


def test_queued_waits_share_one_deadline_timer_and_are_withdrawn_unless_a_thread_took_them() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        timers = 0
        call_at = loop.call_at

        def counting_call_at(when: float, callback: Any, *args: Any, **kw: Any) -> asyncio.TimerHandle:
            nonlocal timers
            timers += 1
            return call_at(when, callback, *args, **kw)

        loop.call_at = counting_call_at  # type: ignore[method-assign]
        calls = _Calls()
        gate = SlotGate(1, deadline_s=0.01, limit_s=0.01)
        assert gate.try_take()
        fetched = loop.time()
        waits = [gate.enqueue(loop, fetched) for _ in range(50)]
        for i, wait in enumerate(waits):
            wait.attach(calls, i)
        assert timers == 2  # one for the stall tick, one for all 50 deadlines (not 50)
        loop.call_at = call_at  # type: ignore[method-assign]
        gate.release()  # the slot goes to the oldest wait
        assert waits[0].admitted and not any(w.done() for w in waits[1:])
        calls.taken_calls.add(1)  # a thread took the second call, ahead of its slot
        while not all(w.ended for w in waits[2:]):
            await asyncio.sleep(0.005)
        assert calls.withdrawn == list(range(2, 50))  # in their order; the taken one stays
        assert not waits[1].done()
        gate.release()
        assert waits[1].admitted
        waits[1].end()
        gate.release()  # nobody waits any more: the slot is free again
        assert gate.free == 1

    asyncio.run(scenario())


def test_a_queued_wait_that_ended_is_handed_no_slot() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        gate = SlotGate(1, deadline_s=10.0, limit_s=10.0)
        assert gate.try_take()
        first, second = gate.enqueue(loop, loop.time()), gate.enqueue(loop, loop.time())
        first.end()  # its run ended before a slot came (a thread took its call; a cancellation)
        gate.release()
        assert not first.admitted and second.admitted
        gate.release()
        assert gate.free == 1

    asyncio.run(scenario())


def test_named_waits_are_admitted_only_by_their_pool_and_a_slot_freed_past_them_is_reported() -> None:
    """The processes pool's waits (sent ahead to one child each): a release in order skips them, the
    pool admits the one whose child took it (pass_to), and a slot freed with only them waiting calls
    on_free (the pool starts a queued run on an idle child)."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        gate = SlotGate(2, deadline_s=10.0, limit_s=10.0)
        freed: list[int] = []
        gate.on_free = lambda: freed.append(gate.free)
        assert gate.try_take() and gate.try_take()  # runs A and B hold both slots
        ahead_a, ahead_b = gate.enqueue(loop, loop.time()), gate.enqueue(loop, loop.time())
        ahead_a.named = ahead_b.named = True
        parked = asyncio.ensure_future(gate.take(loop, loop.time()))  # a run that is not sent ahead
        await asyncio.sleep(0)
        # B's child answers first: it took ahead_b, not the older ahead_a
        gate.pass_to(ahead_b, loop.time())
        assert ahead_b.admitted and not ahead_a.done()
        gate.pass_to(ahead_a, loop.time())  # A's child answers: ahead_a runs in A's slot
        gate.release()
        assert (gate.free, gate.passed) == (0, 1)
        assert len(gate._waiters) == 1 and not gate._waiters[0].done()  # the parked run only
        ahead_a = gate.enqueue(loop, loop.time())  # the next one sent ahead to A's child
        ahead_a.named = True
        gate.release()  # B's run ends: its slot went to ahead_b already
        assert (gate.free, gate.passed, freed) == (0, 0, [])
        gate.release()  # ahead_b's run ends with no ahead taken: the parked run gets it, not ahead_a
        assert await parked is True and not ahead_a.done()
        gate.release()  # the parked run ends: only a named wait is left, the slot frees and says so
        assert (gate.free, freed) == (1, [1])
        assert not ahead_a.done()

    asyncio.run(scenario())
