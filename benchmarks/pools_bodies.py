"""The task bodies of ``benchmarks/pools.py``, plain functions that celeriac's app (``pools_tasks``) and
Celery's (``pools_celery``) both register under the same names, so both run exactly the same code.
Imports only the standard library and redis-py: it runs in Celery's virtualenv too."""

from __future__ import annotations

import os
import socket
import time

import redis


def noop(x: int, y: int) -> int:
    return x + y


def cpu(ms: float) -> int:
    """Burn ``ms`` milliseconds of this process's CPU time."""
    end = time.process_time() + ms / 1000
    n = 0
    while time.process_time() < end:
        n += 1
    return n


_stamps: redis.Redis | None = None


def long(seconds: float) -> None:
    time.sleep(seconds)


def stamp(sent_s: float) -> None:
    """Record when this short task started, after being sent at ``sent_s`` (the hostage measurement)."""
    global _stamps
    if _stamps is None:
        _stamps = redis.Redis.from_url(os.environ["POOLBENCH_REDIS_URL"])
    _stamps.rpush("poolbench:starts", f"{time.time() - sent_s:.6f} {socket.gethostname()}:{os.getpid()}")
