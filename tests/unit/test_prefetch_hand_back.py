"""Prefetched deliveries that did not start in time go back together, in one release.

Their waits end together (the same long task held every slot): one release script for all of them,
not one each. Runs parked on the loop for a slot (``SlotGate.take``): the gate here refuses at once
instead of at its deadline, so that every wait ends in the same turn of the loop, as they do when one
deadline passes for a whole fetch. Runs whose calls wait in the threads pool's queue
(``SlotGate.enqueue``): one look at the deadlines withdraws them all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from celeriac import Celeriac, Worker
from celeriac.broker.base import Delivery
from celeriac.worker import slotgate

SHORTS = 5


@pytest.mark.parametrize("queued", [False, True], ids=["parked", "queued"])
async def test_deliveries_that_missed_their_start_go_back_in_one_release(
    monkeypatch: pytest.MonkeyPatch, queued: bool
) -> None:
    app = Celeriac("late", broker="memory://")
    hold = threading.Event()

    @app.task(name="t.long")
    def long() -> None:
        hold.wait(30)

    @app.task(name="t.short")
    def short() -> None:
        pass

    long.delay()
    for _ in range(SHORTS):
        short.delay()
    worker = Worker(app, pool="threads", concurrency=1)
    # tasks measured as short (one a millisecond): the first fetch takes 1 + 10 messages
    worker.prefetch.mean_s, worker.prefetch.measured = 0.001, 100
    assert worker.prefetch.extra == 10
    worker.prefetch.last_ran_s = float("inf")  # slots flowing (a run always just ended): the extra is taken
    releases: list[tuple[list[Delivery], bool]] = []
    real_release = worker.broker.release

    async def release(consumer: str, deliveries: Sequence[Delivery], *, started: bool) -> int:
        releases.append((list(deliveries), started))
        return await real_release(consumer, deliveries, started=started)

    async def refuse(loop: asyncio.AbstractEventLoop, fetched_at: float) -> bool:
        return False  # the deadline passed (the long task holds the only slot)

    monkeypatch.setattr(worker.broker, "release", release)
    monkeypatch.setattr(worker.prefetch.slots, "take", refuse)
    # The queued waits meet their real 20 ms deadline. A loaded machine can hold the loop for a few
    # milliseconds while the runs start: waits begun before that stall take it off their run time,
    # waits begun after it do not, so their deadlines would be decided in two looks and two releases
    # (seen in CI: 4 then 1). This test is about one look deciding all that are due: stalls are not
    # counted here.
    monkeypatch.setattr(slotgate, "_STALL_SLACK_S", float("inf"))
    # ... and the worker is descheduled for longer than the deadline while it takes the fetch's
    # messages (seen in CI: 3 then 2): they were fetched together, so their deadline is still one
    real_prepare = worker.executor.prepare
    prepared: list[object] = []

    def prepare(*args: Any, **kwargs: Any) -> object:
        prepared.append(None)
        if len(prepared) == 3:  # the fetch's third message: its deadline still runs from the fetch
            time.sleep(3 * slotgate.START_DEADLINE_S)
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(worker.executor, "prepare", prepare)
    assert worker._pool_queues  # the threads pool queues calls itself
    worker._pool_queues = queued
    run = asyncio.create_task(worker.run())
    try:
        while not releases:
            await asyncio.sleep(0.005)
        assert len(releases) == 1
        handed, started = releases[0]
        assert (len(handed), started) == (SHORTS, False)
        assert worker.prefetch.handed_back == SHORTS
        assert worker.prefetch.extra == 0  # prefetching stopped: tasks just became slow
        assert worker.inflight.running == 1  # the long task
    finally:
        hold.set()
    while worker.stats.processed < 1 + SHORTS:  # they come back and run once the slot is free
        await asyncio.sleep(0.005)
    worker.stop()
    await asyncio.wait_for(run, 10)
    assert worker.stats.succeeded == 1 + SHORTS
    assert len(releases) == 1
