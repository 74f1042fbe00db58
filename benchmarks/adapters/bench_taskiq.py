"""taskiq adapter: taskiq-redis RedisStreamBroker (acks), one worker process."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from importlib.metadata import version as dist_version

from harness import BaseAdapter, probe_event, probe_hit, redis_url, results_on
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

# consumer_id="0": the group reads what was queued before it existed (taskiq's default "$" would not)
broker = RedisStreamBroker(url=redis_url(), queue_name="bench", consumer_id="0")
if results_on():
    broker = broker.with_result_backend(RedisAsyncResultBackend(redis_url=redis_url(), result_ex_time=600))
POLL_S = 0.01


@broker.task(task_name="add")
async def add(x: int, y: int) -> int:
    probe_hit()
    return x + y


@broker.task(task_name="sleep")
async def sleep(x: int) -> None:
    await asyncio.sleep(0.05)
    probe_hit()


@broker.task(task_name="slow")
async def slow() -> None:
    probe_event("start")
    await asyncio.sleep(600)


TASKS = {"add": (add, (1, 2)), "sleep": (sleep, (1,))}


class Adapter(BaseAdapter):
    name = "taskiq"
    configs = {
        "drain": "taskiq worker --workers 1 (max-async-tasks 100 default), stream broker",
        "sleep": "taskiq worker --workers 1 --max-async-tasks 100, asyncio.sleep(0.05)",
        "results": "--workers 1, RedisAsyncResultBackend; wait_result(check_interval=10 ms) (caller polls)",
        "kill": "--workers 1, stream broker defaults (idle_timeout 10 min)",
    }

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.started = False

    def version(self):
        return f"{dist_version('taskiq')} / taskiq-redis {dist_version('taskiq-redis')}"

    def _run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _start(self):
        if not self.started:
            await broker.startup()
            self.started = True

    def connect(self):
        self._run(self._start())

    def close(self):
        if self.started:
            self._run(broker.shutdown())

    def enqueue_one(self, n, deadline, task="add"):
        async def go():
            await self._start()
            t, args = TASKS[task]
            for _ in range(20):
                await t.kiq(*args)
            done, m = 0, n - 20
            t0 = time.perf_counter()
            while done < m:
                k = min(256, m - done)
                for _ in range(k):
                    await t.kiq(*args)
                done += k
                if deadline is not None and time.monotonic() > deadline:
                    break
            return done + 20, time.perf_counter() - t0

        return self._run(go())

    def roundtrip(self, n, deadline, warm=False):
        async def go():
            await self._start()
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                handle = await add.kiq(1, 2)
                res = await handle.wait_result(check_interval=POLL_S, timeout=60 if warm else 10)
                out.append(time.perf_counter() - t0)
                assert res.return_value == 3, res
                if time.monotonic() > deadline:
                    break
            return out

        return self._run(go())

    def enqueue_slow(self):
        async def go():
            await self._start()
            await slow.kiq()

        self._run(go())

    def worker_cmd(self, profile):
        cli = os.path.join(os.path.dirname(sys.executable), "taskiq")
        return [
            cli,
            "worker",
            "bench_taskiq:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            "100",
            "--log-level",
            "WARNING",
        ]
