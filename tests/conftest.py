"""Shared fixtures. Every Redis used here is a private redis-server on a free loopback port."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from celeriac import Celeriac
from celeriac.testing import RedisCluster, RedisServer, ThreadWorker, redis_server_binary

CI = bool(os.environ.get("CI"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--write-reliability",
        action="store_true",
        default=False,
        help="after a whole passing run, write docs/reliability.md (otherwise the run checks it is current)",
    )


def _need_redis() -> None:
    if redis_server_binary() is None:
        if CI:
            raise RuntimeError("redis-server is required in CI")
        pytest.skip("redis-server not installed")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private Redis for the session; tests isolate themselves with ``redis_url`` (flushed)."""
    _need_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's private Redis, flushed before each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may kill, restart or fill."""
    _need_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """One private Redis Cluster (3 masters, no replicas) for the session; see ``cluster_url``."""
    _need_redis()
    with RedisCluster(masters=3, replicas=0) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """``redis+cluster://`` URL of the session's cluster, every master flushed before each test."""
    import redis

    for port in redis_cluster.ports:
        client = redis.Redis(port=port)
        client.flushall()
        client.close()
    return redis_cluster.url


@pytest.fixture
def thread_worker() -> Iterator[Callable[..., ThreadWorker]]:
    """Start workers in threads (``thread_worker(app, **options)``); whichever is still running at
    the end of the test is stopped cold, so a test that leaves a task sleeping does not wait for it."""
    started: list[ThreadWorker] = []

    def start(app: Celeriac, **options: Any) -> ThreadWorker:
        w = ThreadWorker(app, **options).start()
        started.append(w)
        return w

    yield start
    for w in started:
        if w.thread.is_alive():
            w.stop(cold=True)
