"""An app for worker subprocesses in integration tests. Its settings come from the environment:
CELERIAC_BROKER_URL, CELERIAC_LEASE_S, CELERIAC_MAX_DELIVERIES... Tasks record what they do in Redis
(under ``test:*`` keys) so that the test process can observe runs across processes."""

from __future__ import annotations

import os
import time

import redis

from celeriac import Celeriac

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


@app.task(name="itest.wait_for_go")
def wait_for_go(token: str) -> str:
    """Marks its start, then blocks until the test pushes to test:go (an event, not a sleep)."""
    _r.rpush("test:started", token)
    _r.blpop(["test:go"], timeout=60)
    _r.rpush("test:finished", token)
    return token


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
