"""A worker holds a small fixed number of Redis connections whatever its concurrency and number of
queues (measured with ``CLIENT LIST`` on a private Redis), reports it in its heartbeat, and a
producer's pool is bounded. A Redis that forbids ``CONFIG`` (managed services) is fine."""

from __future__ import annotations

import threading

import pytest
import redis
from tests.support import running

from celeriac import Celeriac
from celeriac.broker.redis import RedisBroker
from celeriac.testing import RedisServer

pytestmark = pytest.mark.redis


def _clients(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return len(client.client_list()) - 1  # not this one
    finally:
        client.close()


def _measure(fresh: RedisServer, concurrency: int, queues: list[str]) -> tuple[int, int]:
    """Connections while a worker of ``concurrency`` threads runs tasks that send tasks, and the
    count the worker reports in its heartbeat."""
    app = Celeriac("conn", broker=fresh.url, from_env=False, task_ignore_result=False)
    app.conf.worker_ttl_s = 0.5  # heartbeats every few hundred ms

    @app.task(name="child")
    def child(i: int) -> int:
        return i

    @app.task(name="parent")
    def parent(i: int) -> int:
        child.apply_async((i,), queue=queues[i % len(queues)])  # a send from a task thread
        return i

    with running(app, queues=queues, concurrency=concurrency, pool="threads") as worker:
        results = [parent.apply_async((i,), queue=queues[i % len(queues)]) for i in range(4 * concurrency)]
        assert [r.get(timeout=30) for r in results] == list(range(4 * concurrency))
        worker.wait_outcomes(lambda o: len(o) >= 8 * concurrency, timeout_s=30)
        reported = 0
        threading.Event().wait(1.5)  # a heartbeat after the sends (every ttl/3)
        # the test's sends and result waits use the worker's app: both counts include them
        measured = _clients(fresh.url) - 1  # less the registry reads of app.broker.workers() below
        for _ in range(50):
            found = [w for w in app.broker.workers() if w.worker_id == worker.worker.worker_id]
            if found and "connections" in found[0].fields:
                reported = int(found[0].fields["connections"])
                break
            threading.Event().wait(0.1)
    app.close()
    return measured, reported


def test_a_worker_holds_a_fixed_number_of_connections(fresh_redis: RedisServer) -> None:
    small, small_reported = _measure(fresh_redis, 4, ["a"])
    big, big_reported = _measure(fresh_redis, 32, ["a", "b", "c", "d", "e"])
    print(
        f"connections: -c 4, 1 queue: {small} (reported {small_reported}); -c 32, 5 queues: {big} (reported {big_reported})"
    )
    # the worker's own connections are fixed; the task threads' sends share broker_pool_limit (10)
    assert big <= small + 10, f"a worker of 32 threads on 5 queues holds {big} connections"
    assert big <= 20
    # the heartbeat reports the worker's own consumer connections (fetch, settle, leases, pub/sub),
    # counted from its pools: the same whatever the concurrency and number of queues
    assert small_reported == big_reported and 0 < big_reported <= big


def test_a_producer_pool_is_bounded(fresh_redis: RedisServer) -> None:
    app = Celeriac("conn", broker=fresh_redis.url, from_env=False, broker_pool_limit=3)

    @app.task(name="t")
    def t() -> None:
        return None

    def send() -> None:
        for _ in range(50):
            t.delay()

    threads = [threading.Thread(target=send) for _ in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    held = _clients(fresh_redis.url)
    # the pool and the threads' own send connections share the 3; the stats read below makes one more
    assert held <= 3 + 1, f"20 sending threads hold {held} connections with broker_pool_limit=3"
    assert app.broker.stats("default").ready == 1000
    app.close()


def test_a_redis_without_config_runs_tasks_with_a_warning_only(fresh_redis: RedisServer) -> None:
    admin = redis.Redis.from_url(fresh_redis.url)
    # an ACL user like a managed Redis's: everything but CONFIG (and other admin commands)
    admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-@admin", "-config")
    admin.close()
    url = f"redis://app:pw@127.0.0.1:{fresh_redis.port}/0"
    app = Celeriac("noconf", broker=url, from_env=False, task_ignore_result=False)
    denied = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        denied.config_get("maxmemory-policy")
    denied.close()

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    assert app.broker.server_warnings() == []  # no CONFIG needed for the checks
    with running(app, concurrency=2):
        assert add.delay(2, 3).get(timeout=20) == 5
    app.close()


def test_an_info_without_the_eviction_policy_is_a_warning_not_an_error() -> None:
    # a managed Redis that forbids CONFIG and leaves maxmemory_policy out of INFO: the check degrades
    broker = RedisBroker("redis://127.0.0.1:1/0")
    warnings = broker._info_warnings({"redis_version": "7.2.0"})
    assert len(warnings) == 1 and "cannot read Redis maxmemory-policy" in warnings[0]
    assert broker._info_warnings({"redis_version": "7.2.0", "maxmemory_policy": "noeviction"}) == []
