"""Fixtures of the contract suite: every test runs once per broker ("memory", "redis", and Redis
behind a Redis Cluster and behind Sentinel).

The memory broker runs on a :class:`FakeClock`, so "let 200 ms pass" is instant and exact for it;
the Redis broker runs on the Redis server's clock, so the same step sleeps for real. Tests say
``await env.elapse(s)`` and stay identical for both.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from celeriac import Celeriac, Worker
from celeriac.broker.base import Broker
from celeriac.broker.memory import MemoryBroker
from celeriac.broker.redis import RedisBroker
from celeriac.testing import FakeClock, RedisSentinel, redis_server_binary

BROKERS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=pytest.mark.redis),
    pytest.param("sentinel", marks=pytest.mark.redis),
]

# a real Redis clock advances between two commands; leave this much slack above a lease or due time
_REDIS_SLACK_S = 0.01


@dataclass
class BrokerEnv:
    """A broker under test and the means to let its time pass."""

    kind: str
    broker: Broker
    clock: FakeClock | None = None
    redis_url: str | None = None
    master_url: str | None = None
    _opened: list[bool] = field(default_factory=list)

    async def open(self, *queues: str) -> Broker:
        await self.broker.open(list(queues))
        self._opened.append(True)
        return self.broker

    async def elapse(self, seconds: float) -> None:
        """Let ``seconds`` of broker time pass (fake clock: at once; Redis: a real sleep)."""
        if self.clock is not None:
            self.clock.advance(seconds)
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(seconds + _REDIS_SLACK_S)

    def now_ms(self) -> int:
        """The broker's current time in epoch ms."""
        if self.clock is not None:
            return self.clock.time_ms()
        return int(time.time() * 1000)

    async def wait_blocked_fetch(self, timeout_s: float = 5.0) -> None:
        """Return once a fetch is blocked waiting for messages (so a test can wake it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self._blocked_fetches() > 0:
                return
            await asyncio.sleep(0.002)
        raise AssertionError("no fetch blocked within the timeout")

    async def _blocked_fetches(self) -> int:
        if isinstance(self.broker, MemoryBroker):
            return len(self.broker._fetchers)
        import redis

        if self.kind == "cluster":
            cluster = redis.RedisCluster.from_url(
                str(self.redis_url).replace("redis+cluster", "redis", 1).split(",")[0]
            )
            try:
                infos = cluster.info("clients", target_nodes=redis.RedisCluster.PRIMARIES)
                return sum(int(i["blocked_clients"]) for i in infos.values())
            finally:
                cluster.close()
        url = str(self.redis_url)
        if self.kind == "sentinel":  # the master's own URL (the Sentinel form needs a master name)
            url = self.master_url or url
        client = redis.Redis.from_url(url)
        try:
            return int(client.info("clients")["blocked_clients"])
        finally:
            client.close()


@pytest.fixture(scope="session")
def _sentinel_session() -> Iterator[RedisSentinel]:
    """One master, one replica and one Sentinel for the session (no failover here: test_sentinel.py)."""
    if redis_server_binary() is None:
        pytest.skip("redis-server not installed")
    with RedisSentinel(replicas=1, sentinels=1) as topo:
        yield topo


@pytest.fixture
def sentinel_topology(_sentinel_session: RedisSentinel) -> RedisSentinel:
    """The session's Sentinel topology, its master flushed (the Celery URL form reaches it)."""
    import redis

    client = redis.Redis.from_url(_sentinel_session.master.url)
    client.flushall()
    client.close()
    return _sentinel_session


@pytest.fixture(params=BROKERS)
async def env(request: pytest.FixtureRequest) -> AsyncIterator[BrokerEnv]:
    """A fresh broker (memory on a fake clock, or Redis on a flushed private server)."""
    if request.param == "memory":
        clock = FakeClock()
        memory = MemoryBroker(dead_letter_max=10, clock=clock)
        clock.subscribe(memory.time_changed)
        e = BrokerEnv("memory", memory, clock=clock)
    elif request.param == "sentinel":
        topo = request.getfixturevalue("sentinel_topology")
        broker = RedisBroker(
            topo.url,
            prefix="contract",
            dead_letter_max=10,
            transport_options={"master_name": topo.master_name},
        )
        e = BrokerEnv("sentinel", broker, redis_url=topo.url, master_url=topo.master.url)
        e.broker.known_queues()  # connect (ask the Sentinels) before a test's clock starts
    else:
        url = request.getfixturevalue("redis_url" if request.param == "redis" else "cluster_url")
        e = BrokerEnv(request.param, RedisBroker(url, prefix="contract", dead_letter_max=10), redis_url=url)
        if request.param == "cluster":  # connect (slot map) before a test's clock starts
            e.broker.known_queues()
    yield e
    if e._opened:
        await e.broker.close()
    e.broker.close_sync()


@pytest.fixture(params=BROKERS)
def app_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Celeriac]]:
    """Make apps on the broker under test (``memory://`` or the private Redis, flushed)."""
    apps: list[Celeriac] = []
    extra: dict[str, Any] = {}
    if request.param == "sentinel":
        topo = request.getfixturevalue("sentinel_topology")
        url = topo.url
        extra["broker_transport_options"] = {"master_name": topo.master_name}
    else:
        url = {"memory": "memory://", "redis": "redis_url", "cluster": "cluster_url"}[request.param]
        if url != "memory://":
            url = request.getfixturevalue(url)

    def make(**settings: Any) -> Celeriac:
        app = Celeriac("contract", broker=url, result_backend=url, from_env=False, **{**extra, **settings})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(app_factory: Callable[..., Celeriac]) -> Celeriac:
    """An app on the broker under test, with default settings."""
    return app_factory()


@pytest.fixture
def running_worker() -> Callable[..., Any]:
    """``with running_worker(app, **worker_options) as worker:`` a worker in a thread, for tests that
    block on ``AsyncResult.get``."""
    return _running_worker


@contextmanager
def _running_worker(app: Celeriac, **options: Any) -> Iterator[Worker]:
    """A worker on its own event loop in a thread, for tests that block on ``AsyncResult.get``."""
    worker = Worker(app, **options)
    ready = threading.Event()
    errors: list[BaseException] = []

    async def main() -> None:
        run = asyncio.create_task(worker.run())
        await worker.wait_ready()
        ready.set()
        await run

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=target, name="contract-worker", daemon=True)
    thread.start()
    assert ready.wait(10), "worker did not start"
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop"
    if errors:
        raise errors[0]
