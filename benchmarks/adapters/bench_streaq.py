"""streaq adapter: streaq.Worker (Redis streams via coredis), one worker process."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import streaq
from harness import BaseAdapter, probe_event, probe_hit, redis_url, results_on
from streaq import Worker

PROFILE = os.environ.get("BENCH_PROFILE", "drain")
CONCURRENCY = {"sleep": 100}.get(PROFILE, 16)  # 16 is streaq's default

worker = Worker(redis_url=redis_url(), queue_name="bench", concurrency=CONCURRENCY)
# silent: no log line per task; ttl=0: no result kept (results off) except for the round trip
TTL = 300 if results_on() else 0


@worker.task(name="add", silent=True, ttl=TTL)
async def add(x: int, y: int) -> int:
    probe_hit()
    return x + y


@worker.task(name="sleep", silent=True, ttl=TTL)
async def sleep(x: int) -> None:
    await asyncio.sleep(0.05)
    probe_hit()


@worker.task(name="slow", silent=True)
async def slow() -> None:
    probe_event("start")
    await asyncio.sleep(600)


TASKS = {"add": (add, (1, 2)), "sleep": (sleep, (1,))}


class Adapter(BaseAdapter):
    name = "streaq"
    configs = {
        "drain": "streaq run (1 process), concurrency=16 (default), silent tasks, ttl=0",
        "sleep": "concurrency=100, asyncio.sleep(0.05)",
        "results": "concurrency=16; task.result() (pub/sub)",
        "kill": "concurrency=16, defaults (idle_timeout 60 s)",
    }

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ctx = None

    def version(self):
        return streaq.__version__

    def _run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _open(self):
        if self.ctx is None:
            self.ctx = worker.__asynccontextmanager__()  # what `async with worker:` enters
            await self.ctx.__aenter__()

    def connect(self):
        self._run(self._open())

    def close(self):
        if self.ctx is not None:
            self._run(self.ctx.__aexit__(None, None, None))
            self.ctx = None

    def enqueue_one(self, n, deadline, task="add"):
        async def go():
            await self._open()
            t, args = TASKS[task]
            for _ in range(20):
                await t.enqueue(*args)
            done, m = 0, n - 20
            t0 = time.perf_counter()
            while done < m:
                k = min(256, m - done)
                for _ in range(k):
                    await t.enqueue(*args)
                done += k
                if deadline is not None and time.monotonic() > deadline:
                    break
            return done + 20, time.perf_counter() - t0

        return self._run(go())

    def enqueue_bulk(self, n):
        async def go():
            await self._open()
            t0 = time.perf_counter()
            await worker.enqueue_many([add.enqueue(1, 2) for _ in range(n)])
            return time.perf_counter() - t0

        return self._run(go())

    def enqueue_bulk_task(self, n, task):
        async def go():
            await self._open()
            t, args = TASKS[task]
            for i in range(0, n, 20_000):
                await worker.enqueue_many([t.enqueue(*args) for _ in range(min(20_000, n - i))])

        self._run(go())

    def roundtrip(self, n, deadline, warm=False):
        async def go():
            await self._open()
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                handle = await add.enqueue(1, 2)
                res = await handle.result(timeout=60 if warm else 10)
                out.append(time.perf_counter() - t0)
                assert res.result == 3, res
                if time.monotonic() > deadline:
                    break
            return out

        return self._run(go())

    def enqueue_slow(self):
        async def go():
            await self._open()
            await slow.enqueue()

        self._run(go())

    def worker_cmd(self, profile):
        cli = os.path.join(os.path.dirname(sys.executable), "streaq")
        return [cli, "run", "bench_streaq:worker"]
