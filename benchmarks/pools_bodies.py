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


#: a directory (``pools.py --cpu`` sets it): ``cpu`` records, in each process, how long it was between
#: the end of one task and the start of the next (a child's wait for its next task, plus its own
#: per-task work outside the body and any time it was descheduled then)
_GAPS_DIR = os.environ.get("POOLBENCH_GAPS")
_last_end = 0.0
_gaps: list[float] = []


def cpu(ms: float) -> int:
    """Burn ``ms`` milliseconds of this process's CPU time."""
    global _last_end
    if _GAPS_DIR and _last_end:
        _gaps.append(time.perf_counter() - _last_end)
    end = time.process_time() + ms / 1000
    n = 0
    while time.process_time() < end:
        n += 1
    if _GAPS_DIR:
        if len(_gaps) % 100 == 99:  # children end with os._exit (no atexit): written as they go
            with open(os.path.join(_GAPS_DIR, str(os.getpid())), "w") as f:
                f.write("\n".join(f"{g:.7f}" for g in _gaps))
        _last_end = time.perf_counter()
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
