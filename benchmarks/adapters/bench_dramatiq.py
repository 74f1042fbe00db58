"""Dramatiq adapter: RedisBroker; one worker process (--processes 1) with threads."""

from __future__ import annotations

import sys
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from harness import BaseAdapter, probe_event, probe_hit, redis_url, results_on

broker = RedisBroker(url=redis_url())
if results_on():
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    broker.add_middleware(Results(backend=RedisBackend(url=redis_url())))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="add", **({"store_results": True} if results_on() else {}))
def add(x, y):
    probe_hit()
    return x + y


@dramatiq.actor(actor_name="sleep")
def sleep(x):
    time.sleep(0.05)
    probe_hit()


@dramatiq.actor(actor_name="slow", time_limit=3_600_000)
def slow():
    probe_event("start")
    time.sleep(600)


TASKS = {"add": (add, (1, 2)), "sleep": (sleep, (1,))}
THREADS = {"drain": 8, "results": 8, "kill": 8, "sleep": 100}


class Adapter(BaseAdapter):
    name = "dramatiq"
    configs = {
        "drain": "dramatiq --processes 1 --threads 8 (default threads)",
        "sleep": "dramatiq --processes 1 --threads 100, time.sleep(0.05)",
        "results": "--processes 1 --threads 8, Results middleware (Redis), get_result(block=True)",
        "kill": "--processes 1 --threads 8, defaults",
    }

    def version(self):
        return dramatiq.__version__

    def connect(self):
        broker.client.ping()

    def close(self):
        broker.close()

    def enqueue_one(self, n, deadline, task="add"):
        t, args = TASKS[task]
        for _ in range(20):
            t.send(*args)
        done = 0
        n -= 20
        t0 = time.perf_counter()
        while done < n:
            k = min(256, n - done)
            for _ in range(k):
                t.send(*args)
            done += k
            if deadline is not None and time.monotonic() > deadline:
                break
        return done + 20, time.perf_counter() - t0

    def roundtrip(self, n, deadline, warm=False):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            value = add.send(1, 2).get_result(block=True, timeout=60_000 if warm else 10_000)
            out.append(time.perf_counter() - t0)
            assert value == 3
            if time.monotonic() > deadline:
                break
        return out

    def enqueue_slow(self):
        slow.send()

    def worker_cmd(self, profile):
        return [
            sys.executable,
            "-m",
            "dramatiq",
            "bench_dramatiq",
            "--processes",
            "1",
            "--threads",
            str(THREADS[profile]),
        ]
