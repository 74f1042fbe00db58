"""``await result`` / ``AsyncResult.aget()``: waiting for a result does not block the event loop.

The proof: the task blocks until the test's event loop sets an event. If the wait blocked the loop,
the loop could not set it and the test would time out; it passes only if the loop keeps running."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from celeriac import Celeriac
from celeriac.exceptions import ResultTimeout
from celeriac.testing.thread_worker import ThreadWorker

pytestmark = pytest.mark.redis


@pytest.fixture(params=["redis", "memory"])
def app(request: pytest.FixtureRequest) -> Iterator[Celeriac]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"
    app = Celeriac("aget", broker=url, result_backend=url, from_env=False, task_ignore_result=False)
    yield app
    app.close()


async def test_aget_leaves_the_loop_running(app: Celeriac) -> None:
    release = threading.Event()

    @app.task
    def wait_for_release() -> str:
        assert release.wait(20), "the event loop never released the task: it was blocked"
        return "released"

    worker = ThreadWorker(app, pool="threads", concurrency=2).start()
    try:
        result = wait_for_release.delay()
        waiting = asyncio.ensure_future(result.aget(timeout=20))
        await asyncio.sleep(0.05)  # the loop runs while aget waits
        assert not waiting.done()
        release.set()
        assert await waiting == "released"
        assert await app.AsyncResult(result.id) == "released"  # `await result`, a fresh handle
    finally:
        worker.stop()


async def test_many_waiters_at_once(app: Celeriac) -> None:
    @app.task
    def double(x: int) -> int:
        return 2 * x

    worker = ThreadWorker(app, pool="threads", concurrency=4).start()
    try:
        results = [double.delay(i) for i in range(150)]  # more waiters than the pool's connections
        assert await asyncio.gather(*(r.aget(timeout=30) for r in results)) == [2 * i for i in range(150)]
    finally:
        worker.stop()


async def test_aget_timeout_and_failure(app: Celeriac) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ResultTimeout):
        await app.AsyncResult("never-sent").aget(timeout=0.2)
    worker = ThreadWorker(app, pool="threads", concurrency=1).start()
    try:
        with pytest.raises(ValueError, match="boom"):
            await boom.delay().aget(timeout=10)
        assert isinstance(await boom.delay().aget(timeout=10, propagate=False), ValueError)
    finally:
        worker.stop()


def test_aget_in_eager_mode() -> None:
    app = Celeriac("eager", broker="memory://", from_env=False, task_always_eager=True)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    async def main() -> int:
        return await add.delay(1, 2)

    assert asyncio.run(main()) == 3
    app.close()
