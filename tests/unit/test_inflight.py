"""The in-flight invariant: a delivery that no slot runs and that nothing settles never keeps its lease.

Whatever ends a run without an outcome (here: a cancellation the worker did not ask for, the way the
gevent stuck task ended), the delivery is handed back and runs again; and the lease loop hands back
any owned delivery left in that state by a bug it does not know about.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from celeriac import Celeriac, Worker
from celeriac.broker.base import Delivery
from celeriac.worker.inflight import Inflight


async def test_a_run_cancelled_without_an_outcome_is_handed_back_and_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Celeriac("orphan", broker="memory://", lease_s=30.0)  # a lease would keep it for 30 s
    runs: list[int] = []
    go = asyncio.Event()

    @app.task
    async def wait() -> None:
        runs.append(1)
        await go.wait()

    worker = Worker(app, concurrency=2)
    wait.delay()
    run = asyncio.create_task(worker.run())
    try:
        while not runs:
            await asyncio.sleep(0.001)
        (task,) = worker.inflight.runs()
        task.cancel()  # not shutdown's doing: no outcome will come
        while len(runs) < 2:  # handed back at once, reclaimed, run again
            await asyncio.sleep(0.001)
        go.set()
        while worker.stats.succeeded < 1:
            await asyncio.sleep(0.001)
    finally:
        worker.stop()
        await asyncio.wait_for(run, 10)
    assert "its run ended without an outcome; handing it back" in caplog.text
    assert not worker.inflight


async def test_the_lease_loop_hands_back_an_owned_delivery_that_nothing_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Celeriac("orphan", broker="memory://", lease_s=0.15)  # a lease check every 50 ms

    @app.task
    def noop() -> None:
        return None

    worker = Worker(app, concurrency=1)
    noop.delay()
    handed_back: list[Delivery] = []
    real_release = worker.broker.release

    async def release(consumer: str, deliveries: list[Delivery], *, started: bool) -> int:
        handed_back.extend(deliveries)
        return await real_release(consumer, deliveries, started=started)

    worker.broker.release = release  # type: ignore[method-assign]
    real_start = worker.start_delivery
    taken: list[Delivery] = []

    def lose_it(d: Delivery) -> None:  # a bug: taken, then neither run nor submitted
        if not taken:
            taken.append(d)
            worker.inflight.take(d)
            return
        real_start(d)

    worker.start_delivery = lose_it  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="celeriac.worker")
    run = asyncio.create_task(worker.run())
    try:
        while worker.stats.succeeded < 1:  # handed back by the lease loop, reclaimed, run
            await asyncio.sleep(0.005)
    finally:
        worker.stop()
        await asyncio.wait_for(run, 10)
    assert [d.entry_id for d in handed_back] == [taken[0].entry_id]
    assert "no slot runs it and no outcome of it is being recorded" in caplog.text


def test_inflight_tracks_each_delivery_from_take_to_settle() -> None:
    inflight = Inflight()
    d = Delivery("q", "1-0", b"x", 1)
    slot = inflight.take(d)
    assert inflight.owned() == [d] and inflight.running == 0
    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_task(asyncio.sleep(0))
        inflight.start(slot, fut)
        assert inflight.running == 1 and inflight.orphans() == []
        assert inflight.run_ended(slot) is True
        assert inflight.orphans() == [d]  # ended, owned, nothing settles it: the invariant trips
        inflight.settling(d)
        assert inflight.orphans() == []
        inflight.flush([("q", "1-0")], True)
        assert inflight.flushing(("q", "1-0"))
        inflight.drop(d)
        assert not inflight and inflight.owned() == []
        loop.run_until_complete(fut)
    finally:
        loop.close()
