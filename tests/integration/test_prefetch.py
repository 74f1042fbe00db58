"""Bounded prefetch (worker/prefetch.py): short tasks are prefetched, and a long task never holds them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celeriac, Worker
from celeriac.worker.autoscale import Autoscale

from .conftest import eventually

pytestmark = pytest.mark.redis


@pytest.fixture
def app(redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("prefetch", broker=redis_url, lease_s=10.0)
    yield app
    app.close()


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_a_long_task_never_holds_prefetched_short_ones_hostage(
    app: Celeriac, thread_worker: Any, pool: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"  # a file: the long task may run in a child process

    @app.task(name="t.short")
    def short() -> None:
        pass

    @app.task(name="t.long")
    def long() -> None:
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    # worker A (one slot) learns that tasks are short, so it prefetches beyond its free slot
    a = thread_worker(app, pool=pool, concurrency=1)
    # A's budget is 100 ms (not 10) and its slot counts as flowing for 5 s after a run: however slowly a
    # loaded machine runs it, A measures the no-ops as short, prefetches, and takes the short tasks below
    a.worker.prefetch.budget_s, a.worker.prefetch.flow_s = 0.1, 5.0
    app.send_many([short.s() for _ in range(200)])
    a.wait_outcomes(lambda o: len(o) >= 200)
    assert a.worker.prefetch.extra > 1
    try:
        # the long task and the short ones behind it arrive in one go: A takes them all
        app.send_many([long.s(), *(short.s() for _ in range(30))])
        # the short ones A took cannot start (its slot runs the long task): they go back within the
        # start deadline, and worker B runs every one of them while the long task still runs on A
        b = thread_worker(app, pool="threads", concurrency=1)
        b.wait_outcomes(lambda o: sum(x.task_name == "t.short" for x in o) >= 30, timeout_s=20)
        assert not release.exists()
        assert a.worker.prefetch.handed_back >= 1
        assert a.worker.prefetch.extra == 0  # prefetching stopped: tasks just became slow
        assert sum(x.task_name == "t.short" for x in a.outcomes) == 200  # A ran none of them
    finally:
        release.touch()
    a.wait_outcomes(lambda o: any(x.task_name == "t.long" for x in o))


def test_no_prefetch_before_tasks_are_measured_nor_for_autoscaled_workers(app: Celeriac) -> None:
    from celeriac.worker.prefetch import Prefetch

    p = Prefetch(2, 500)
    assert p.extra == 0  # nothing measured yet: fetch for free slots only
    for i in range(100):
        p.ran(i * 0.001)  # one completion a millisecond
    assert p.extra == 10  # 10 ms budget / 1 ms between completions
    p.missed_start()
    assert p.extra == 0
    off = Prefetch(2, 500, enabled=False)
    for i in range(100):
        off.ran(i * 0.001)
    assert off.extra == 0


def _measured_short(w: Any) -> None:
    """Tasks measured as short, and slots flowing: the first fetch takes 1 + 10 messages per free slot."""
    p = w.worker.prefetch
    p.mean_s, p.measured, p.run_mean_s, p.timed, p.last_ran_s = 0.001, 100, 0.001, 100, float("inf")


def test_a_child_that_answers_runs_the_task_sent_ahead_to_it_in_the_answered_runs_slot(
    app: Celeriac, thread_worker: Any
) -> None:
    @app.task(name="t.pid")
    def pid() -> int:
        return os.getpid()

    w = thread_worker(app, pool="processes", concurrency=1)
    gate, pool = w.worker.prefetch.slots, w.worker.pool
    passes: list[bool] = []
    handed_to: list[int] = []

    def pass_on() -> bool:
        passed = gate.pass_on()
        passes.append(passed)
        return passed

    def pass_to(waiter: Any, now_s: float) -> None:
        handed_to.append(id(waiter))
        real_pass_to(waiter, now_s)

    real_pass_to = gate.pass_to
    pool.pass_on = pass_on  # counts what the worker set up (gate.pass_on)
    gate.pass_to = pass_to  # type: ignore[method-assign]
    _measured_short(w)
    # the first fetch takes 1 + 10 messages: one runs in the only child, the next is sent ahead to it
    # (its inbox), the rest wait in the pool's queue; each answer starts the one sent ahead
    app.send_many([pid.s() for _ in range(40)])
    w.wait_outcomes(lambda o: len(o) >= 40)
    assert [o.kind for o in w.outcomes] == ["ack"] * 40
    assert len(passes) + len(handed_to) == 40  # one hand-on per answer, one way or the other
    assert handed_to  # some answers found a run sent ahead, and handed it the slot by name
    assert len(set(handed_to)) == len(handed_to)  # each wait admitted once
    # every early hand-on was paid back by a run's release: the gate is whole again
    eventually(lambda: (gate.passed, gate.free) == (0, 1))
    assert not gate._waiters  # no admitted wait is left behind (the stall tick walks them)
    assert w.worker.prefetch.handed_back == 0


def test_a_task_sent_ahead_to_a_child_that_dies_before_taking_it_runs_in_another(
    app: Celeriac, thread_worker: Any, tmp_path: Path
) -> None:
    died, go = tmp_path / "died", tmp_path / "go"

    @app.task(name="t.die_once")
    def die_once() -> None:
        if not died.exists():
            died.touch()
            deadline = time.monotonic() + 30
            while not go.exists() and time.monotonic() < deadline:  # until a task is sent ahead
                time.sleep(0.005)
            os._exit(1)

    @app.task(name="t.pid")
    def pid() -> int:
        return os.getpid()

    w = thread_worker(app, pool="processes", concurrency=1)
    gate, pool = w.worker.prefetch.slots, w.worker.pool
    gate.deadline_s = gate.limit_s = 30.0  # nothing goes back for being late: only the death matters
    aheads_at_death: list[bool] = []
    real_ended = pool._ended

    def ended(child: Any) -> None:
        aheads_at_death.append(child.ahead is not None)
        real_ended(child)

    pool._ended = ended
    _measured_short(w)
    app.send_many([die_once.s(), *(pid.s() for _ in range(5))])
    eventually(lambda: any(c.ahead is not None for c in list(pool._children.values())))
    go.touch()
    w.wait_outcomes(lambda o: len(o) >= 6, timeout_s=30)
    assert sorted(o.kind for o in w.outcomes) == ["ack"] * 6  # die_once ran again (handed back) and passed
    assert aheads_at_death[0] is True  # the child died with a task sent ahead to it, untaken
    assert w.worker.pool.lost == 1  # only the task that died with its child
    assert w.worker.prefetch.handed_back == 0  # the one sent ahead was never started, so never lost
    pids = {o.value for o in w.outcomes if o.task_name == "t.pid"}
    assert len(pids) >= 1 and all(isinstance(p, int) for p in pids)
    eventually(lambda: (gate.passed, gate.free) == (0, 1))


@pytest.mark.parametrize("max_tasks", [1, 3])
def test_no_task_is_sent_ahead_to_a_child_past_its_max_tasks(
    app: Celeriac, thread_worker: Any, max_tasks: int
) -> None:
    from collections import Counter

    from celeriac.worker.recycling import Recycling

    @app.task(name="t.pid")
    def pid() -> int:
        return os.getpid()

    w = thread_worker(app, pool="processes", concurrency=1, recycling=Recycling(max_tasks=max_tasks))
    gate = w.worker.prefetch.slots
    gate.deadline_s = gate.limit_s = 30.0
    _measured_short(w)
    app.send_many([pid.s() for _ in range(12)])
    w.wait_outcomes(lambda o: len(o) >= 12, timeout_s=30)
    assert [o.kind for o in w.outcomes] == ["ack"] * 12
    per_child = Counter(o.value for o in w.outcomes)
    assert max(per_child.values()) <= max_tasks  # each child ran at most its limit
    assert len(per_child) >= 12 // max_tasks


def test_an_answer_hands_the_slot_on_only_when_the_worker_prefetches(app: Celeriac) -> None:
    w = Worker(app, pool="processes", concurrency=2)
    assert w.pool.pass_on == w.prefetch.slots.pass_on  # type: ignore[attr-defined]
    scaled = Worker(app, pool="processes", concurrency=2, autoscale=Autoscale(2, 1))  # no prefetch, no gate
    assert scaled.pool.pass_on is None  # type: ignore[attr-defined]


def test_requests_too_large_for_a_record_wait_for_a_free_child_and_run(
    app: Celeriac, thread_worker: Any
) -> None:
    @app.task(name="t.size")
    def size(blob: str) -> int:
        return len(blob)

    w = thread_worker(app, pool="processes", concurrency=1)
    pool = w.worker.pool
    gate = w.worker.prefetch.slots
    gate.deadline_s = gate.limit_s = 30.0
    placed: list[bool] = []  # a prefetched run's request: sent ahead (True) or queued (False)
    real_place = pool._place

    def place(run: Any) -> None:
        real_place(run)
        placed.append(any(c.ahead is run for c in pool._children.values()))

    pool._place = place
    _measured_short(w)
    blobs = [str(i) * (100_000 + i) for i in range(1, 7)]  # each larger than a 64 KiB record
    app.send_many([size.s(b) for b in blobs])
    w.wait_outcomes(lambda o: len(o) >= 6, timeout_s=30)
    assert [o.kind for o in w.outcomes] == ["ack"] * 6
    assert sorted(o.value for o in w.outcomes) == sorted(len(b) for b in blobs)
    assert placed and not any(placed)  # prefetched, never sent ahead: it could not be claimed back
