"""Autoscale and self-recycling decisions with a fake clock: no Redis, no threads."""

from __future__ import annotations

from celeriac.worker.autoscale import Autoscale, Autoscaler
from celeriac.worker.recycling import Recycling, SelfRecycling


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_grows_in_one_step_and_does_not_shrink_right_after() -> None:
    clock = Clock()
    scaler = Autoscaler(Autoscale(10, 2, idle_s=30), clock)
    assert scaler.wants_backlog(current=2, running=2)
    assert scaler.next_size(2, 2, backlog=5) == 7  # running + backlog
    clock.now += 29
    assert scaler.next_size(7, 7, backlog=None) == 7  # a new window started when it grew
    assert scaler.next_size(7, 7, backlog=100) == 10  # capped at MAX
    assert not scaler.wants_backlog(current=10, running=10)


def test_shrinks_to_the_peak_of_the_idle_window_never_below_min() -> None:
    clock = Clock()
    scaler = Autoscaler(Autoscale(10, 2, idle_s=30), clock)
    scaler.next_size(2, 2, backlog=8)  # -> 10
    for running in (3, 4, 1):
        scaler.task_started(running)
    clock.now += 29
    assert scaler.next_size(10, 1, backlog=None) == 10  # the window is not over yet
    clock.now += 1
    assert scaler.next_size(10, 1, backlog=None) == 4  # at most 4 slots were used at once
    clock.now += 30
    assert scaler.next_size(4, 0, backlog=None) == 2  # at most 1 used in the last window: MIN
    assert not scaler.wants_backlog(current=2, running=1)  # a free slot: never reads the backlog


def test_self_recycling_checks_memory_on_the_first_task_then_at_most_every_0_2_s() -> None:
    clock = Clock()
    sizes = iter([100, 5000])
    reads: list[int] = []

    def resident() -> int:
        reads.append(1)
        return next(sizes)

    recycling = SelfRecycling(Recycling(max_memory_kib=1000), resident, clock)
    assert recycling.after_task() == ""  # read: 100 KiB
    assert recycling.after_task() == ""  # too soon to read again
    clock.now += 0.2
    assert "resident memory 5000 KiB" in recycling.after_task()
    assert len(reads) == 2


def test_self_recycling_counts_tasks() -> None:
    recycling = SelfRecycling(Recycling(max_tasks=2))
    assert recycling.after_task() == ""
    assert recycling.after_task() == "ran 2 tasks (max 2)"
    assert SelfRecycling(Recycling(max_age_s=100)).age_limit_s is not None
