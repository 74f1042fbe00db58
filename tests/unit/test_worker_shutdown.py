"""A task that raises WorkerShutdown stops its worker cleanly: its delivery is handed back, not left
owned (a zombie), and it runs again on the next worker."""

from __future__ import annotations

import asyncio

import pytest

from celeriac import Celeriac, Worker, WorkerShutdown
from celeriac.testing import drain_async


@pytest.mark.parametrize(
    ("kind", "pool"),
    # a sync task on the asyncio pool runs without a coroutine of its own (Worker._start_call)
    [("async", "asyncio"), ("sync", "threads"), ("sync", "asyncio")],
)
async def test_worker_shutdown_from_a_task_stops_the_worker_and_hands_the_delivery_back(
    kind: str, pool: str
) -> None:
    app = Celeriac(
        "ws", broker="memory://", result_backend="memory://", task_ignore_result=False, from_env=False
    )
    calls: list[int] = []

    def body() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise WorkerShutdown()
        return "ran again"

    if kind == "async":

        @app.task(name="ws.stopper")
        async def stopper_async() -> str:
            return body()

        result = stopper_async.delay()
    else:

        @app.task(name="ws.stopper")
        def stopper_sync() -> str:
            return body()

        result = stopper_sync.delay()
    worker = Worker(app, concurrency=2, pool=pool)
    await asyncio.wait_for(worker.run(), 10)  # returns on its own: the task stopped it
    assert worker.stats.lost == 1 and worker.stats.processed == 0
    stats = app.broker.stats("default")
    assert (stats.running, stats.ready, stats.dead) == (0, 1, 0)  # handed back: nobody owns it
    done = await drain_async(app, ["default"])
    assert [o.value for o in done.outcomes] == ["ran again"]
    assert result.get(timeout=1) == "ran again"
