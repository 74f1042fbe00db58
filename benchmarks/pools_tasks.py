"""The app of ``benchmarks/pools.py``: sync no-op and CPU-bound tasks, broker from the environment."""

from __future__ import annotations

import os
import socket
import time

import redis

from celeriac import Celeriac

app = Celeriac("poolbench", broker=os.environ["POOLBENCH_REDIS_URL"], result_backend="disabled")


@app.task(name="pools.noop")
def noop(x: int, y: int) -> int:
    return x + y


@app.task(name="pools.cpu")
def cpu(ms: float) -> int:
    """Burn ``ms`` milliseconds of this process's CPU time."""
    end = time.process_time() + ms / 1000
    n = 0
    while time.process_time() < end:
        n += 1
    return n


_stamps: redis.Redis | None = None


@app.task(name="pools.long")
def long(seconds: float) -> None:
    time.sleep(seconds)


@app.task(name="pools.stamp")
def stamp(sent_s: float) -> None:
    """Record when this short task started, after being sent at ``sent_s`` (the hostage measurement)."""
    global _stamps
    if _stamps is None:
        _stamps = redis.Redis.from_url(os.environ["POOLBENCH_REDIS_URL"])
    _stamps.rpush("poolbench:starts", f"{time.time() - sent_s:.6f} {socket.gethostname()}:{os.getpid()}")
