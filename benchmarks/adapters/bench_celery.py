"""Celery adapter: Redis broker (kombu), solo pool for one process, threads pool for the sleep drain."""

from __future__ import annotations

import sys
import time

import celery
from celery import Celery
from harness import BaseAdapter, probe_event, probe_hit, redis_url, results_on

app = Celery("bench", broker=redis_url(), backend=redis_url() if results_on() else None)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="tasks.add")
def add(x, y):
    probe_hit()
    return x + y


@app.task(name="tasks.sleep")
def sleep(x):
    time.sleep(0.05)
    probe_hit()
    return x


@app.task(name="tasks.slow")
def slow():
    probe_event("start")
    time.sleep(600)


TASKS = {"add": (add, (1, 2)), "sleep": (sleep, (1,))}
POOL = {
    "drain": ["--pool=solo"],
    "results": ["--pool=solo"],
    "kill": ["--pool=solo"],
    "sleep": ["--pool=threads", "--concurrency=100"],
}


class Adapter(BaseAdapter):
    name = "celery"
    configs = {
        "drain": "celery worker --pool=solo (1 process), defaults otherwise (prefetch x4, early ack)",
        "sleep": "celery worker --pool=threads -c 100, time.sleep(0.05)",
        "results": "--pool=solo, Redis result backend, delay().get()",
        "kill": "--pool=solo, defaults (early ack)",
    }

    def version(self) -> str:
        return celery.__version__

    def connect(self) -> None:
        add.delay(1, 2)  # opens the producer connection and declares the queue; counted in memory

    def close(self) -> None:
        app.close()

    def enqueue_one(self, n, deadline, task="add"):
        t, args = TASKS[task]
        for _ in range(20):
            t.delay(*args)
        done = 0
        n -= 20
        t0 = time.perf_counter()
        while done < n:
            k = min(256, n - done)
            for _ in range(k):
                t.delay(*args)
            done += k
            if deadline is not None and time.monotonic() > deadline:
                break
        return done + 20, time.perf_counter() - t0

    def roundtrip(self, n, deadline, warm=False):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            value = add.delay(1, 2).get(timeout=60 if warm else 10)
            out.append(time.perf_counter() - t0)
            assert value == 3
            if time.monotonic() > deadline:
                break
        return out

    def enqueue_slow(self):
        slow.delay()

    def worker_cmd(self, profile):
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench_celery",
            "worker",
            "-l",
            "WARNING",
            *POOL[profile],
        ]
