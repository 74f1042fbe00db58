"""arq adapter: one worker process; poll_delay 10 ms (arq's default 500 ms makes it ~10x slower)."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import arq
from arq import create_pool
from arq.connections import RedisSettings
from harness import BaseAdapter, probe_event, probe_hit, redis_url

REDIS = RedisSettings.from_dsn(redis_url())
POLL_S = 0.01


async def add(ctx, x, y):
    probe_hit()
    return x + y


async def sleep(ctx, x):
    await asyncio.sleep(0.05)
    probe_hit()


async def slow(ctx):
    probe_event("start")
    await asyncio.sleep(600)


def _settings(name: str, **over):
    """arq reads a settings class's own attributes only (no inheritance): build each one whole."""
    base = dict(
        functions=[add, sleep, slow],
        redis_settings=REDIS,
        poll_delay=POLL_S,
        keep_result=0,  # results off
        job_timeout=3600,
    )
    return type(name, (), {**base, **over})


DrainSettings = _settings("DrainSettings")
SleepSettings = _settings("SleepSettings", max_jobs=100)
ResultsSettings = _settings("ResultsSettings", keep_result=3600)
KillSettings = _settings("KillSettings")


SETTINGS = {
    "drain": "DrainSettings",
    "sleep": "SleepSettings",
    "results": "ResultsSettings",
    "kill": "KillSettings",
}
ARGS = {"add": (1, 2), "sleep": (1,)}


class Adapter(BaseAdapter):
    name = "arq"
    configs = {
        "drain": "arq worker (1 process, asyncio), max_jobs=10 (default), poll_delay=10 ms, keep_result=0",
        "sleep": "max_jobs=100, poll_delay=10 ms, asyncio.sleep(0.05)",
        "results": "poll_delay=10 ms; job.result(poll_delay=10 ms) (arq's caller polls)",
        "kill": "max_jobs=10, poll_delay=10 ms, defaults otherwise",
    }

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.pool = None

    def version(self):
        return arq.VERSION if hasattr(arq, "VERSION") else arq.version.VERSION

    def _run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _pool(self):
        if self.pool is None:
            self.pool = await create_pool(REDIS)
        return self.pool

    def connect(self):
        self._run(self._pool())

    def close(self):
        if self.pool is not None:
            self._run(self.pool.aclose())

    def enqueue_one(self, n, deadline, task="add"):
        async def go():
            pool = await self._pool()
            args = ARGS[task]
            for _ in range(20):
                await pool.enqueue_job(task, *args)
            done, m = 0, n - 20
            t0 = time.perf_counter()
            while done < m:
                k = min(256, m - done)
                for _ in range(k):
                    await pool.enqueue_job(task, *args)
                done += k
                if deadline is not None and time.monotonic() > deadline:
                    break
            return done + 20, time.perf_counter() - t0

        return self._run(go())

    def roundtrip(self, n, deadline, warm=False):
        async def go():
            pool = await self._pool()
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                job = await pool.enqueue_job("add", 1, 2)
                value = await job.result(timeout=60 if warm else 10, poll_delay=POLL_S)
                out.append(time.perf_counter() - t0)
                assert value == 3
                if time.monotonic() > deadline:
                    break
            return out

        return self._run(go())

    def enqueue_slow(self):
        async def go():
            await (await self._pool()).enqueue_job("slow")

        self._run(go())

    def worker_cmd(self, profile):
        cli = os.path.join(os.path.dirname(sys.executable), "arq")
        return [cli, f"bench_arq.{SETTINGS[profile]}"]
