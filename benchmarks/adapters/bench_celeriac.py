"""celeriac adapter: Celeriac app, Worker(pool="asyncio") in one process."""

from __future__ import annotations

import asyncio
import time

from harness import BaseAdapter, probe_event, probe_hit, python_worker, redis_url, results_on

import celeriac
from celeriac import Celeriac, Worker

app = Celeriac("bench", broker=redis_url(), result_backend=None if results_on() else "disabled")


@app.task(name="tasks.add")
async def add(x: int, y: int) -> int:
    probe_hit()
    return x + y


@app.task(name="tasks.add_sync")
def add_sync(x: int, y: int) -> int:
    probe_hit()
    return x + y


@app.task(name="tasks.sleep")
async def sleep(x: int) -> int:
    await asyncio.sleep(0.05)
    probe_hit()
    return x


@app.task(name="tasks.slow")
async def slow() -> None:
    probe_event("start")
    await asyncio.sleep(600)


TASKS = {"add": add, "add_sync": add_sync, "sleep": sleep}
ARGS = {"add": (1, 2), "add_sync": (1, 2), "sleep": (1,)}

CONCURRENCY = {"drain": 100, "drain_sync": 100, "sleep": 100, "results": 100, "kill": 100, "burst": 100}


def run_worker(profile: str) -> None:
    """The worker of one profile; ``burst`` (profiling) stops once the queue is empty."""
    Worker(
        app, queues=["default"], concurrency=CONCURRENCY[profile], pool="asyncio", burst=profile == "burst"
    ).start()


class Adapter(BaseAdapter):
    name = "celeriac"
    configs = {
        "drain": "1 process, Worker(pool=asyncio, concurrency=100), async def add",
        "drain_sync": "1 process, Worker(pool=asyncio, concurrency=100), def add (thread pool)",
        "sleep": "1 process, asyncio pool, concurrency=100, asyncio.sleep(0.05)",
        "results": "1 process, asyncio pool; apply_async(ignore_result=False).get()",
        "kill": "1 process, asyncio pool, default lease 10 s",
    }

    def version(self) -> str:
        return celeriac.__version__

    def connect(self) -> None:
        app.broker.sync.ping()

    def close(self) -> None:
        app.close()

    def enqueue_one(self, n: int, deadline: float | None, task: str = "add") -> tuple[int, float]:
        t, args = TASKS[task], ARGS[task]
        for _ in range(20):  # warm-up (connection, first-call costs); not counted
            t.delay(*args)
        n -= 20
        done = 0
        t0 = time.perf_counter()
        while done < n:
            for _ in range(min(256, n - done)):
                t.delay(*args)
            done += min(256, n - done)
            if deadline is not None and time.monotonic() > deadline:
                break
        return done + 20, time.perf_counter() - t0

    def enqueue_bulk(self, n: int) -> float:
        app.broker.sync.ping()
        t0 = time.perf_counter()
        app.send_many([add.s(1, 2) for _ in range(n)])
        return time.perf_counter() - t0

    def enqueue_bulk_task(self, n: int, task: str) -> None:
        t, args = TASKS[task], ARGS[task]
        for i in range(0, n, 50_000):
            app.send_many([t.s(*args) for _ in range(min(50_000, n - i))])

    def roundtrip(self, n: int, deadline: float, warm: bool = False) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            value = add.apply_async((1, 2), ignore_result=False).get(timeout=60 if warm else 10)
            out.append(time.perf_counter() - t0)
            assert value == 3, value
            if time.monotonic() > deadline:
                break
        return out

    def enqueue_slow(self) -> None:
        slow.delay()

    def worker_cmd(self, profile: str) -> list[str]:
        return python_worker("celeriac", profile)
