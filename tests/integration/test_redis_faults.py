"""Redis down, full, restarted or misconfigured: clear errors, no silent loss, recovery by itself."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from celeriac import BrokerConnectionError, BrokerFullError, Celeriac, ConfigurationError
from celeriac.testing import RedisServer, free_port

pytestmark = pytest.mark.redis


def test_send_with_redis_down_raises_a_celeriac_error() -> None:
    app = Celeriac("t", broker=f"redis://:hunter2@127.0.0.1:{free_port()}/0")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(BrokerConnectionError) as info:
        add.delay(1, 2)
    assert "hunter2" not in str(info.value)  # the password never appears in errors
    app.close()


@pytest.mark.parametrize(
    "url", ["redis://localhost:port/0", "http://localhost:6379", "redis://", "redis://h/db"]
)
def test_invalid_broker_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="broker_url"):
        Celeriac("t", broker=url)


def test_full_redis_refuses_sends_clearly_and_keeps_what_is_queued(
    fresh_redis: RedisServer, thread_worker: Any
) -> None:
    client = redis.Redis.from_url(fresh_redis.url)
    app = Celeriac("t", broker=fresh_redis.url)
    done: list[int] = []

    @app.task
    def add(x: int, y: int) -> int:
        done.append(x + y)
        return x + y

    thread_worker(app).stop()  # workers consumed this queue before (its consumer group exists)
    add.delay(1, 1)
    client.config_set("maxmemory-policy", "noeviction")
    for i in range(200):  # data fills Redis, then the limit drops below what is used
        client.set(f"filler:{i}", "x" * 10_000)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) // 2)
    with pytest.raises(BrokerFullError, match="out of memory"):
        add.delay(1, 2)
    assert app.broker.stats("default").ready == 1  # what was queued before is still there
    worker = thread_worker(app)  # a worker drains while Redis is full (acks free memory)
    worker.wait_outcomes(lambda outcomes: len(outcomes) == 1)
    assert done == [2]
    client.config_set("maxmemory", 0)  # memory frees up: sending works again
    add.delay(3, 4)
    worker.wait_outcomes(lambda outcomes: len(outcomes) == 2)
    assert done == [2, 7]
    app.close()
    client.close()


def test_eviction_policy_that_can_lose_queues_is_reported(fresh_redis: RedisServer) -> None:
    client = redis.Redis.from_url(fresh_redis.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    app = Celeriac("t", broker=fresh_redis.url)
    warnings = app.broker.server_warnings()
    assert any("allkeys-lru" in w and "noeviction" in w for w in warnings)
    client.config_set("maxmemory-policy", "noeviction")
    assert app.broker.server_warnings() == []
    app.close()
    client.close()


def test_worker_survives_a_redis_restart(
    fresh_redis: RedisServer, thread_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = Celeriac("t", broker=fresh_redis.url, lease_s=1.0)

    @app.task(ignore_result=False)
    def add(x: int, y: int) -> int:
        return x + y

    worker = thread_worker(app)
    assert add.delay(1, 2).get(timeout=10) == 3
    with caplog.at_level(logging.WARNING, logger="celeriac.worker"):
        fresh_redis.restart()  # kill -9 and start again: without persistence the data is gone
        # sends may fail while Redis is away; once it answers, the worker consumes again by itself
        result = add.delay(20, 22)
        assert result.get(timeout=20) == 42
    worker.wait_outcomes(lambda outcomes: any(o.value == 42 for o in outcomes))
    app.close()
