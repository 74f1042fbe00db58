"""Results are fenced by delivery, like acks: a worker that lost a delivery writes neither its ack nor
its result. Checked on the worker's Settler against real Redis, for results on the broker's Redis
(inside settle.lua) and in a separate result store (ownership checked with extend.lua first)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis

from celeriac import Celeriac
from celeriac._redis.keys import GROUP
from celeriac.broker.base import Delivery, Enqueue
from celeriac.broker.redis import RedisBroker
from celeriac.execution import Outcome
from celeriac.record import ResultWrite
from celeriac.results.redis import RedisResultBackend
from celeriac.worker.inflight import Inflight
from celeriac.worker.settle import Settler
from celeriac.worker.stats import WorkerStats

pytestmark = pytest.mark.redis
Q = "rf"
PREFIX = "rf"


class Env:
    def __init__(self, url: str, result_url: str) -> None:
        self.url = url
        self.broker = RedisBroker(url, prefix=PREFIX)
        self.backend = RedisResultBackend(result_url, prefix=PREFIX)
        self.client = redis.Redis.from_url(url)
        self.results = redis.Redis.from_url(result_url)
        # the app decides whether results travel with the broker's settle: it knows both URLs
        app = Celeriac("rf", broker=url, result_backend=result_url, key_prefix=PREFIX)
        self.via_broker = app.results_travel_with(self.broker)

    def settler(self, consumer: str) -> tuple[Settler, WorkerStats]:
        stats = WorkerStats()
        settler = Settler(
            self.broker,
            self.backend,
            consumer,
            Inflight(),
            stats,
            None,
            lambda: None,
            results_via_broker=self.via_broker,
        )
        return settler, stats

    def result(self, task_id: str) -> list[bytes]:
        return self.results.lrange(self.backend.keys.result(task_id), 0, -1)  # type: ignore[return-value]

    def evalsha_calls(self, client: redis.Redis) -> int:
        return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    def close(self) -> None:
        self.broker.close_sync()
        self.backend.close_sync()
        self.client.close()
        self.results.close()


@pytest.fixture(params=["broker", "separate"])
async def env(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Env]:
    """Results on the broker's Redis (``broker``) or in another database (``separate``: a different
    URL, so the worker cannot write them inside settle.lua)."""
    result_url = redis_url if request.param == "broker" else redis_url[:-1] + "1"
    e = Env(redis_url, result_url)
    assert e.via_broker == (request.param == "broker")
    yield e
    await e.broker.close()
    await e.backend.close()
    e.close()


def ack(d: Delivery, value: bytes) -> Outcome:
    task_id = f"task-{d.data.decode()}"
    return Outcome("ack", task_id=task_id, task_name="t", store=ResultWrite(task_id, value, 60.0))


async def test_a_worker_that_lost_a_delivery_writes_neither_its_ack_nor_its_result(env: Env) -> None:
    b = env.broker
    await b.open([Q])
    b.enqueue_many([Enqueue(Q, b"a"), Enqueue(Q, b"b")])
    a, bb = await b.fetch([Q], "old", 2, 0)
    # "old" was cut off: its lease on `a` expired and "new" took it over (lease 0: at once)
    (a2,), _ = await b.reclaim(Q, "new", 1, 0, 5)
    new, new_stats = env.settler("new")
    new.submit(a2, ack(a2, b"from-new"))
    await new.settle_once()
    assert new_stats.succeeded == 1 and env.result("task-a") == [b"from-new"]

    old, old_stats = env.settler("old")  # the cut-off worker comes back with both outcomes
    old.submit(a, ack(a, b"late"))
    old.submit(bb, ack(bb, b"from-old"))
    await old.settle_once()
    assert (old_stats.fenced, old_stats.succeeded) == (1, 1)
    assert env.result("task-a") == [b"from-new"]  # not overwritten
    assert env.result("task-b") == [b"from-old"]  # still owned: recorded
    assert env.client.xpending(b.keys.queue(Q).ready, GROUP)["pending"] == 0


async def test_results_cost_one_round_trip_on_the_broker_and_one_more_when_separate(env: Env) -> None:
    b = env.broker
    await b.open([Q])
    b.enqueue_many([Enqueue(Q, b"x"), Enqueue(Q, b"y")])
    x, y = await b.fetch([Q], "w", 2, 0)
    settler, stats = env.settler("w")
    env.client.config_resetstat()
    settler.submit(x, ack(x, b"rx"))
    settler.submit(y, Outcome("ack", task_id="task-y", task_name="t"))  # this one ignores its result
    await settler.settle_once()
    assert stats.succeeded == 2 and env.result("task-x") == [b"rx"]
    if env.via_broker:
        assert env.evalsha_calls(env.client) == 1  # settle.lua wrote the result with the acks
    else:
        # extend.lua (ownership), store_result.lua (the result store), settle.lua: one server here,
        # so INFO counts all three
        assert env.evalsha_calls(env.client) == 3


async def test_without_results_a_flush_is_one_script_call(env: Env) -> None:
    b = env.broker
    await b.open([Q])
    b.enqueue_many([Enqueue(Q, b"x")])
    (x,) = await b.fetch([Q], "w", 1, 0)
    settler, stats = env.settler("w")
    env.client.config_resetstat()
    settler.submit(x, Outcome("ack", task_id="task-x", task_name="t"))
    await settler.settle_once()
    assert stats.succeeded == 1
    assert env.evalsha_calls(env.client) == 1  # no ownership check added when results are off


async def test_results_of_at_most_once_tasks_are_written_without_a_fence(env: Env) -> None:
    b = env.broker
    await b.open([Q])
    settler, stats = env.settler("w")
    store = ResultWrite("task-early", b"r", 60.0)
    settler.submit(None, Outcome("ack", task_id="task-early", task_name="t", store=store))
    await settler.settle_once()
    assert stats.succeeded == 1 and env.result("task-early") == [b"r"]
