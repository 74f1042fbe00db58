"""SAQ adapter: Redis queue, one worker process (asyncio)."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import saq
from harness import BaseAdapter, probe_event, probe_hit, redis_url, results_on
from saq import Queue

queue = Queue.from_url(redis_url(), name="default")
TTL = 600 if results_on() else -1  # -1: SAQ keeps nothing after the job (results off)


async def add(ctx, *, x, y):
    probe_hit()
    return x + y


async def sleep(ctx, *, x):
    await asyncio.sleep(0.05)
    probe_hit()


async def slow(ctx):
    probe_event("start")
    await asyncio.sleep(600)


FUNCS = [add, sleep, slow]
drain_settings = {"queue": queue, "functions": FUNCS, "concurrency": 10}
sleep_settings = {"queue": queue, "functions": FUNCS, "concurrency": 100}
results_settings = drain_settings
kill_settings = drain_settings
KW = {"add": {"x": 1, "y": 2}, "sleep": {"x": 1}}


class Adapter(BaseAdapter):
    name = "saq"
    configs = {
        "drain": "saq worker (1 process), concurrency=10 (default), job ttl=-1 (nothing kept)",
        "sleep": "concurrency=100, asyncio.sleep(0.05)",
        "results": "concurrency=10; enqueue() + job.refresh(until_complete=...) (pub/sub)",
        "kill": "concurrency=10; slow task timeout=60 s (default 10 s would abort it before the kill)",
    }

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.keepalive = None

    def version(self):
        return saq.__version__ if hasattr(saq, "__version__") else "?"

    def _run(self, coro):
        return self.loop.run_until_complete(coro)

    def connect(self):
        self._run(queue.connect()) if hasattr(queue, "connect") else None

    def close(self):
        if self.keepalive is not None:
            self.keepalive.cancel()
        try:
            self._run(queue.disconnect())
        except Exception:
            pass

    def enqueue_one(self, n, deadline, task="add"):
        async def go():
            kw = KW[task]
            for _ in range(20):
                await queue.enqueue(task, ttl=TTL, **kw)
            done, m = 0, n - 20
            t0 = time.perf_counter()
            while done < m:
                k = min(256, m - done)
                for _ in range(k):
                    await queue.enqueue(task, ttl=TTL, **kw)
                done += k
                if deadline is not None and time.monotonic() > deadline:
                    break
            return done + 20, time.perf_counter() - t0

        return self._run(go())

    def roundtrip(self, n, deadline, warm=False):
        async def go():
            if self.keepalive is None:
                # SAQ's job-update multiplexer psubscribes when the first listener arrives and
                # unsubscribes when the last one leaves, so a fast job can finish before a fresh
                # refresh(until_complete) is subscribed and the wait hangs. A listener on a dummy key
                # (public API) keeps the subscription up, as a long-lived client would have.
                self.keepalive = asyncio.ensure_future(
                    queue.listen(["bench-keepalive"], lambda *_: False, timeout=None)
                )
                await asyncio.sleep(0.3)
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                job = await queue.enqueue("add", ttl=TTL, x=1, y=2)
                await job.refresh(until_complete=60 if warm else 10)  # pub/sub wait
                value = job.result
                out.append(time.perf_counter() - t0)
                assert value == 3, value
                if time.monotonic() > deadline:
                    break
            return out

        return self._run(go())

    def enqueue_slow(self):
        self._run(queue.enqueue("slow", timeout=60))

    def worker_cmd(self, profile):
        cli = os.path.join(os.path.dirname(sys.executable), "saq")
        return [cli, f"bench_saq.{profile}_settings", "--quiet"]
