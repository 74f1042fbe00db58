"""A lease renewal that races a settle already in flight is not a lost lease.

The settle acks the delivery in the broker; a renewal sent meanwhile finds it gone. Until the settle's
reply comes back, the delivery is still in the worker's owned set, so the renewal used to log
"lease lost" for a delivery the worker had just acked. The broker here holds the settle's reply back
until a renewal has seen the acked delivery, which makes the race happen every time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from celeriac import Celeriac, Worker
from celeriac.broker.base import Delivery, Settlement


async def test_a_renewal_racing_an_in_flight_settle_logs_no_lost_lease(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Celeriac("race", broker="memory://", lease_s=0.15)  # a renewal every 50 ms

    @app.task
    def noop() -> None:
        return None

    worker = Worker(app, concurrency=1)
    broker = worker.broker
    real_settle, real_extend = broker.settle, broker.extend
    acked, renewed = asyncio.Event(), asyncio.Event()
    raced: list[Delivery] = []

    async def settle(consumer: str, settlements: Sequence[Settlement]) -> list[Delivery]:
        fenced = await real_settle(consumer, settlements)
        acked.set()
        await asyncio.wait_for(renewed.wait(), 5)  # the reply is "in flight" while a renewal runs
        return fenced

    async def extend(consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        lost = await real_extend(consumer, deliveries)
        if acked.is_set() and lost:
            raced.extend(lost)
            renewed.set()
        return lost

    monkeypatch.setattr(broker, "settle", settle)
    monkeypatch.setattr(broker, "extend", extend)
    noop.delay()
    caplog.set_level(logging.WARNING, logger="celeriac.worker")
    run = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(renewed.wait(), 5)
        while worker.stats.processed < 1:  # the settle returns right after the renewal
            await asyncio.sleep(0.001)
    finally:
        worker.stop()
        await asyncio.wait_for(run, 10)
    assert len(raced) == 1  # the renewal did find the delivery acked
    assert (worker.stats.succeeded, worker.stats.fenced) == (1, 0)
    assert "lease lost" not in caplog.text
