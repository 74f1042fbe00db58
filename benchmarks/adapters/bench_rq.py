"""RQ adapter: SimpleWorker (no fork per job: RQ's fastest one-process mode)."""

from __future__ import annotations

import os
import sys
import time

import rq
from harness import BaseAdapter, probe_event, probe_hit, redis_url, results_on
from redis import Redis
from rq import Queue

# results off unless measuring the round trip (result_ttl=0: nothing kept after success)
RESULT_TTL = 500 if results_on() else 0


def add(x, y):
    probe_hit()
    return x + y


def sleep(x):
    time.sleep(0.05)
    probe_hit()


def slow():
    probe_event("start")
    time.sleep(600)


TASKS = {"add": (add, (1, 2)), "sleep": (sleep, (1,))}


class Adapter(BaseAdapter):
    name = "rq"
    configs = {
        "drain": "rq worker -w rq.worker.SimpleWorker (1 process, one job at a time), result_ttl=0",
        "sleep": "SimpleWorker: no concurrency inside one process (one job at a time)",
        "results": "SimpleWorker; job.latest_result(timeout=...)",
        "kill": "SimpleWorker, defaults (job timeout 180 s)",
    }

    def __init__(self):
        self.redis = Redis.from_url(redis_url())
        self.q = Queue("default", connection=self.redis)

    def version(self):
        return rq.__version__

    def connect(self):
        self.redis.ping()

    def close(self):
        self.redis.close()

    def enqueue_one(self, n, deadline, task="add"):
        fn, args = TASKS[task]
        q = self.q
        for _ in range(20):
            q.enqueue(fn, *args, result_ttl=RESULT_TTL)
        done = 0
        n -= 20
        t0 = time.perf_counter()
        while done < n:
            k = min(256, n - done)
            for _ in range(k):
                q.enqueue(fn, *args, result_ttl=RESULT_TTL)
            done += k
            if deadline is not None and time.monotonic() > deadline:
                break
        return done + 20, time.perf_counter() - t0

    def enqueue_bulk(self, n):
        self.redis.ping()
        t0 = time.perf_counter()
        self.q.enqueue_many([Queue.prepare_data(add, (1, 2), result_ttl=RESULT_TTL) for _ in range(n)])
        return time.perf_counter() - t0

    def enqueue_bulk_task(self, n, task):
        fn, args = TASKS[task]
        for i in range(0, n, 20_000):
            k = min(20_000, n - i)
            self.q.enqueue_many([Queue.prepare_data(fn, args, result_ttl=RESULT_TTL) for _ in range(k)])

    def roundtrip(self, n, deadline, warm=False):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            job = self.q.enqueue(add, 1, 2)
            res = job.latest_result(timeout=60 if warm else 10)
            out.append(time.perf_counter() - t0)
            assert res is not None and res.return_value == 3, res
            if time.monotonic() > deadline:
                break
        return out

    def enqueue_slow(self):
        self.q.enqueue(slow)

    def worker_cmd(self, profile):
        rq_cli = os.path.join(os.path.dirname(sys.executable), "rq")
        return [rq_cli, "worker", "--url", redis_url(), "-w", "rq.worker.SimpleWorker", "-q", "default"]
