"""A worker that does not prefetch starts everything it took, even beyond its slots.

The fetch and the reclaim loops each take up to ``free_slots()`` at the same moment: a fresh worker
beside expired leases takes twice its slots. The slot gate of the bounded prefetch (prefetch.py) once
admitted every run of every pool, so an asyncio worker handed back the deliveries beyond its slots
when they had not started within the start deadline. Each hand-back marks the consumer in
``{queue}:reclaimed`` as a lease taken from it, which is how the 200k soak (asyncio workers replaced
after SIGKILLs) counted hundreds of leases "lost" by live workers. The broker here holds the fetch's
reply until the reclaim has taken its deliveries, which makes that race happen every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from celeriac import Celeriac, Worker
from celeriac.broker.base import Delivery
from celeriac.testing.clock import FakeClock

SLOTS = 4
LEASE_S = 10.0


async def test_an_asyncio_worker_starts_what_fetch_and_reclaim_took_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock(1_000_000.0)
    app = Celeriac("overcommit", broker="memory://", clock=clock, lease_s=LEASE_S)
    started: list[int] = []
    hold = asyncio.Event()

    @app.task(name="t.held")
    async def held(i: int) -> None:
        started.append(i)
        await hold.wait()

    # a worker that died holding SLOTS deliveries: their leases have expired
    for i in range(SLOTS):
        held.delay(i)
    queue = app.conf.task_default_queue
    dead = await app.broker.fetch([queue], "dead-worker", SLOTS, 0)
    assert len(dead) == SLOTS
    clock.advance(LEASE_S + 1)
    for i in range(SLOTS, 2 * SLOTS):  # and as many ready messages
        held.delay(i)

    worker = Worker(app, pool="asyncio", concurrency=SLOTS)
    broker = worker.broker
    real_fetch, real_reclaim, real_release = broker.fetch, broker.reclaim, broker.release
    reclaimed = asyncio.Event()
    handed_back: list[Delivery] = []

    async def fetch(queues: Sequence[str], consumer: str, count: int, block_ms: int) -> list[Delivery]:
        if not reclaimed.is_set():  # the reply is "in flight" while the reclaim takes its share
            await asyncio.wait_for(reclaimed.wait(), 5)
        return await real_fetch(queues, consumer, count, block_ms)

    async def reclaim(
        queue: str, consumer: str, count: int, lease_ms: int, max_deliveries: int
    ) -> tuple[list[Delivery], int]:
        got = await real_reclaim(queue, consumer, count, lease_ms, max_deliveries)
        if got[0]:
            reclaimed.set()
        return got

    async def release(consumer: str, deliveries: Sequence[Delivery], *, started: bool) -> int:
        handed_back.extend(deliveries)
        return await real_release(consumer, deliveries, started=started)

    monkeypatch.setattr(broker, "fetch", fetch)
    monkeypatch.setattr(broker, "reclaim", reclaim)
    monkeypatch.setattr(broker, "release", release)
    run = asyncio.create_task(worker.run())
    try:
        # every task starts while all of them are held: none waits for a slot, none goes back
        async def all_started() -> None:
            while len(started) < 2 * SLOTS and not handed_back:
                await asyncio.sleep(0.005)

        await asyncio.wait_for(all_started(), 10)
        assert handed_back == []
        assert sorted(started) == list(range(2 * SLOTS))
        assert worker.inflight.running == 2 * SLOTS
    finally:
        hold.set()
        while worker.stats.processed < len(started):
            await asyncio.sleep(0.005)
        worker.stop()
        await asyncio.wait_for(run, 10)
    assert (worker.stats.succeeded, worker.stats.reclaimed) == (2 * SLOTS, SLOTS)
    assert handed_back == []
