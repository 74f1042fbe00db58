"""Huey adapter: RedisHuey (blocking BRPOP); one consumer process with worker threads."""

from __future__ import annotations

import sys
import time

import huey as huey_pkg
from harness import BaseAdapter, probe_event, probe_hit, redis_url, results_on
from huey import RedisHuey

# notify_result: huey's own BLPOP-based result wait (its default polls from 50 ms up)
huey = RedisHuey("bench", url=redis_url(), results=results_on(), notify_result=results_on())


@huey.task(name="add")
def add(x, y):
    probe_hit()
    return x + y


@huey.task(name="sleep")
def sleep(x):
    time.sleep(0.05)
    probe_hit()


@huey.task(name="slow")
def slow():
    probe_event("start")
    time.sleep(600)


TASKS = {"add": (add, (1, 2)), "sleep": (sleep, (1,))}
WORKERS = {"drain": 4, "results": 4, "kill": 4, "sleep": 100}


class Adapter(BaseAdapter):
    name = "huey"
    configs = {
        "drain": "huey_consumer -k thread -w 4 (1 process), results off",
        "sleep": "huey_consumer -k thread -w 100, time.sleep(0.05)",
        "results": "-k thread -w 4, results on, notify_result=True (BLPOP), result.get(blocking=True)",
        "kill": "-k thread -w 4, defaults",
    }

    def version(self):
        return huey_pkg.__version__

    def connect(self):
        huey.storage.conn.ping()

    def enqueue_one(self, n, deadline, task="add"):
        t, args = TASKS[task]
        for _ in range(20):
            t(*args)
        done = 0
        n -= 20
        t0 = time.perf_counter()
        while done < n:
            k = min(256, n - done)
            for _ in range(k):
                t(*args)
            done += k
            if deadline is not None and time.monotonic() > deadline:
                break
        return done + 20, time.perf_counter() - t0

    def roundtrip(self, n, deadline, warm=False):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            value = add(1, 2).get(blocking=True, timeout=60 if warm else 10)
            out.append(time.perf_counter() - t0)
            assert value == 3
            if time.monotonic() > deadline:
                break
        return out

    def enqueue_slow(self):
        slow()

    def worker_cmd(self, profile):
        return [
            sys.executable,
            "-m",
            "huey.bin.huey_consumer",
            "bench_huey.huey",
            "-k",
            "thread",
            "-w",
            str(WORKERS[profile]),
            "-q",
        ]
