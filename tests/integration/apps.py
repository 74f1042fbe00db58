"""An app for worker subprocesses in integration tests. Its settings come from the environment:
CELERIAC_BROKER_URL, CELERIAC_LEASE_S, CELERIAC_MAX_DELIVERIES... Tasks record what they do in Redis
(under ``test:*`` keys) so that the test process can observe runs across processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import redis

from celeriac import Celeriac, SoftTimeLimitExceeded, TimeLimitExceeded

app = Celeriac("itest")
_r = redis.Redis.from_url(app.conf.broker_url)


@app.task(name="itest.record")
def record(token: str) -> str:
    _r.rpush("test:runs", token)
    return token


@app.task(name="itest.slow", ignore_result=False)
def slow(token: str, seconds: float) -> str:
    """Marks its start, sleeps, then marks its end."""
    _r.rpush("test:started", token)
    time.sleep(seconds)
    _r.rpush("test:finished", token)
    return token


@app.task(name="itest.nap", ignore_result=False)
def nap(token: str, seconds: float) -> str:
    """Sleeps (a blocking call) without touching Redis: as many may run at once as the pool allows."""
    time.sleep(seconds)
    return token


@app.task(name="itest.run_loop", ignore_result=False)
def run_loop(token: str, seconds: float) -> str:
    """A sync task that runs an event loop of its own (sync code calling an async library)."""

    async def inner() -> str:
        await asyncio.sleep(seconds)
        return token

    return asyncio.run(inner())


@app.task(name="itest.spin", ignore_result=False)
def spin(seconds: float) -> str:
    """CPU-bound: computes without yielding (gevent cannot switch away from it)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


@app.task(name="itest.wait_for_go")
def wait_for_go(token: str) -> str:
    """Marks its start, then blocks until the test pushes to test:go (an event, not a sleep)."""
    _r.rpush("test:started", token)
    _r.blpop(["test:go"], timeout=60)
    _r.rpush("test:finished", token)
    return token


# signals of tasks in a worker whose broker link a test cuts (a TcpProxy) go straight to Redis
_direct = redis.Redis.from_url(os.environ.get("ITEST_DIRECT_URL") or app.conf.broker_url)


@app.task(name="itest.owner", ignore_result=False)
def owner(token: str) -> int:
    """Marks its start as ``token:pid``, blocks until the test pushes to ``test:go:<pid>``, marks its
    end and returns the pid: the result says which worker process recorded it."""
    pid = os.getpid()
    _direct.rpush("test:started", f"{token}:{pid}")
    _direct.blpop([f"test:go:{pid}"], timeout=60)
    _direct.rpush("test:finished", f"{token}:{pid}")
    return pid


@app.task(name="itest.suicide")
def suicide() -> None:
    """Kills the worker process running it, every time (a poison task)."""
    _r.rpush("test:started", "suicide")
    os._exit(1)


@app.task(name="itest.at_most_once", acks_late=False)
def at_most_once(token: str) -> None:
    _r.rpush("test:started", token)
    _r.blpop(["test:go"], timeout=60)
    _r.rpush("test:finished", token)


# ---- pools, limits and recycling (test_process_pool.py, test_recycling.py) -------------------------
@app.task(name="itest.pid", ignore_result=False)
def pid() -> int:
    return os.getpid()


@app.task(name="itest.loaded", ignore_result=False)
def loaded(module: str) -> bool:
    """Whether ``module`` is imported in the process running this task."""
    import sys

    return module in sys.modules


@app.task(name="itest.apid", ignore_result=False)
async def apid() -> int:
    await asyncio.sleep(0)
    return os.getpid()


@app.task(name="itest.soft_sleep", ignore_result=False, soft_time_limit=0.3)
def soft_sleep() -> str:
    """Blocks in one long sleep: only a signal (the processes pool's soft limit) interrupts it."""
    try:
        time.sleep(60)
    except SoftTimeLimitExceeded:
        _r.rpush("test:soft", os.getpid())
        return "interrupted"
    return "slept"


@app.task(name="itest.async_soft", ignore_result=False, soft_time_limit=0.3)
async def async_soft() -> str:
    try:
        await asyncio.sleep(60)
    except SoftTimeLimitExceeded:
        return "interrupted"
    return "slept"


@app.task(name="itest.hard_sleep", ignore_result=False, time_limit=0.3)
def hard_sleep(token: str) -> None:
    _r.rpush("test:started", f"{token}:{os.getpid()}")
    time.sleep(60)


@app.task(
    name="itest.hard_then_ok",
    bind=True,
    ignore_result=False,
    time_limit=0.3,
    autoretry_for=(TimeLimitExceeded,),
    default_retry_delay=0,
)
def hard_then_ok(self: Any) -> int:
    """Hits its hard limit on the first run, succeeds on the retry."""
    if self.request.retries == 0:
        time.sleep(60)
    return self.request.retries


@app.task(name="itest.crash_once", ignore_result=False)
def crash_once(token: str) -> str:
    """Kills its process on the first delivery (a segfault-like death), succeeds on the next."""
    _r.rpush("test:started", token)
    if _r.incr(f"test:crash:{token}") == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return token


@app.task(name="itest.crash_at_most_once", ignore_result=False, acks_late=False)
def crash_at_most_once(token: str) -> None:
    _r.rpush("test:started", token)
    os._exit(3)


_hog: list[bytes] = []


@app.task(name="itest.hog", ignore_result=False)
def hog(mib: int) -> int:
    """Keeps ``mib`` MiB allocated in this process (a leak), and returns its pid."""
    _hog.append(b"x" * (mib << 20))
    return os.getpid()


@app.task(name="itest.async_hard", ignore_result=False, time_limit=0.3)
async def async_hard() -> None:
    await asyncio.sleep(60)


class CustomError(Exception):
    """An exception defined in the tasks module: rebuilt in the worker from the child's pickle."""


@app.task(name="itest.retry_once", bind=True, ignore_result=False)
def retry_once(self: Any) -> int:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return self.request.retries


@app.task(name="itest.custom_error", ignore_result=False)
def custom_error() -> None:
    raise CustomError("from the child")


@app.task(name="itest.unpicklable", ignore_result=False)
def unpicklable() -> Any:
    return lambda: None


# ---- Redis restarts and the soak (test_redis_faults.py, test_soak.py) --------------------------------
_mark_fds: dict[int, int] = {}


def _mark_fd() -> int:
    """This process's file under $ITEST_MARK_DIR, opened once per pid (children of a fork reopen)."""
    pid = os.getpid()
    fd = _mark_fds.get(pid)
    if fd is None:
        path = os.path.join(os.environ["ITEST_MARK_DIR"], f"marks-{pid}")
        fd = _mark_fds[pid] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    return fd


@app.task(name="itest.mark")
async def mark(token: str | int, seconds: float = 0.0) -> None:
    """Appends its token as a line to a file of this process, then awaits ``seconds`` (a task that is
    still running, with its run recorded, when its worker is killed). The record survives a SIGKILL of
    the worker (the kernel holds the write), does not depend on the Redis a test kills, and costs one
    write(2) per task. Run counts come from reading every file."""
    os.write(_mark_fd(), f"{token}\n".encode())
    if seconds:
        await asyncio.sleep(seconds)


# ---- time limits per pool and kind of code (test_limits_per_pool.py) --------------------------------
@app.task(name="itest.work", ignore_result=False)
def work(kind: str, seconds: float) -> str:
    """``sleep``: one blocking ``time.sleep``; ``cpu``: a loop that never yields. "soft" when the soft
    time limit interrupted it, "done" when it ran to its end."""
    try:
        if kind == "sleep":
            time.sleep(seconds)
        else:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass
    except SoftTimeLimitExceeded:
        return "soft"
    return "done"


@app.task(name="itest.awork", ignore_result=False)
async def awork(kind: str, seconds: float) -> str:
    """A coroutine that waits (``asyncio.sleep``); "soft" when the soft time limit interrupted it."""
    try:
        await asyncio.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "soft"
    return "done"
