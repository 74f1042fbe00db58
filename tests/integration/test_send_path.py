"""The producer's fast paths on real Redis: a per-thread connection for single sends, streamed bulk sends.

Each fast path must behave like the pooled redis-py path it replaces: reconnect after a lost
connection, survive an emptied script cache, make its own connection in a forked child, and raise
celeriac errors.
"""

from __future__ import annotations

import os
import threading

import pytest
import redis

from celeriac import Celeriac
from celeriac.exceptions import BrokerConnectionError, BrokerFullError
from celeriac.testing import RedisServer

pytestmark = pytest.mark.redis


def _app(url: str) -> Celeriac:
    app = Celeriac("t", broker=url, result_backend="disabled")

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    return app


def test_single_send_reconnects_after_redis_restarts(fresh_redis: RedisServer) -> None:
    app = _app(fresh_redis.url)
    app.send_task("t.add", (1, 2))
    fresh_redis.restart()  # the thread's own connection is now dead
    app.send_task("t.add", (3, 4))  # falls back to the pooled client, which reconnects
    app.send_task("t.add", (5, 6))  # and the own connection is made again
    assert app.broker.stats("default").ready == 2  # no persistence: only the sends after the restart
    app.close()


def test_single_send_with_redis_down_raises_a_connection_error(fresh_redis: RedisServer) -> None:
    app = _app(fresh_redis.url)
    app.send_task("t.add", (1, 2))
    fresh_redis.kill()
    with pytest.raises(BrokerConnectionError):
        app.send_task("t.add", (1, 2))
    app.close()


def test_threads_send_on_their_own_connections(fresh_redis: RedisServer) -> None:
    app = _app(fresh_redis.url)

    def send() -> None:
        for i in range(200):
            app.send_task("t.add", (i, i))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert app.broker.stats("default").ready == 800
    app.close()


def test_forked_child_sends_on_a_connection_of_its_own(fresh_redis: RedisServer) -> None:
    app = _app(fresh_redis.url)
    app.send_task("t.add", (1, 2))  # the parent's own connection exists before the fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits without returning to pytest
        try:
            app.send_task("t.add", (3, 4))
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    app.send_task("t.add", (5, 6))  # the parent's connection was not disturbed by the child
    assert app.broker.stats("default").ready == 3
    app.close()


def test_bulk_send_survives_an_emptied_script_cache(fresh_redis: RedisServer) -> None:
    app = _app(fresh_redis.url)
    add = app.tasks["t.add"]
    app.send_many([add.s(1, 2) for _ in range(10)])
    redis.Redis.from_url(fresh_redis.url).script_flush()
    app.send_many([add.s(i, i) for i in range(2_500)])  # three chunks, each met by NOSCRIPT once
    assert app.broker.stats("default").ready == 2_510
    app.close()


def test_bulk_and_single_sends_on_a_full_redis_raise_broker_full(fresh_redis: RedisServer) -> None:
    app = _app(fresh_redis.url)
    add = app.tasks["t.add"]
    app.send_many([add.s(1, 2)])
    client = redis.Redis.from_url(fresh_redis.url)
    client.config_set("maxmemory", 1)  # anything: used memory is already above it
    with pytest.raises(BrokerFullError):
        app.send_many([add.s(i, i) for i in range(2_500)])
    with pytest.raises(BrokerFullError):
        add.delay(1, 2)
    client.config_set("maxmemory", 0)
    add.delay(1, 2)  # the connection is still in step: the next send works
    app.send_many([add.s(1, 2)])
    assert app.broker.stats("default").ready == 3
    app.close()
    client.close()
