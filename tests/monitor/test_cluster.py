"""On Redis Cluster: every monitoring structure of a queue lives in the queue's slot, so recording
(record.lua) and reading work across nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from celeriac.broker.base import Delivery
from celeriac.execution import Outcome
from celeriac.monitor import MonitorReader, MonitorSettings, Recorder
from celeriac.states import TaskState
from celeriac.testing import RedisCluster, redis_server_binary
from celeriac.testing.outcomes import fill_outcomes

pytestmark = pytest.mark.redis

QUEUES = ["default", "emails", "reports", "billing"]  # spread over the three masters


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    if redis_server_binary() is None:
        pytest.skip("redis-server not installed")
    with RedisCluster(masters=3, replicas=0) as c:
        yield c


def test_record_and_read_on_a_cluster(cluster: RedisCluster) -> None:
    client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    slots = {client.keyslot(f"celeriac:{{{q}}}:m:log") for q in QUEUES}
    assert len({cluster.master_of(s).port for s in slots}) > 1  # the queues are on several nodes
    ids = fill_outcomes(client, 5000, queues=QUEUES, batch=100)

    async def worker_side() -> None:  # the worker's asyncio path, on a cluster client
        aio = redis.asyncio.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
        rec = Recorder(aio, "celeriac", "w", MonitorSettings())
        for i, q in enumerate(QUEUES):
            o = Outcome("ack", f"live-{i}", "n", TaskState.SUCCESS, runtime_s=0.001)
            rec.add(Delivery(q, f"{int(time.time() * 1000)}-0", b""), o, None, time.time())
        await rec.flush()
        assert rec.recorded == 4 and not rec.pending
        await rec.close()

    asyncio.run(worker_side())
    reader = MonitorReader(client)
    page = reader.page(QUEUES, limit=5004)
    assert len({r.task_id for r in page.records}) == 5004 and page.next_cursor is None
    assert len(reader.page(QUEUES, state="FAILURE", limit=100).records) == 50
    assert reader.task(ids[7], QUEUES)[0].task_id == ids[7]
    assert reader.task("live-3", QUEUES)[0].queue == "billing"
    assert sum(reader.series(QUEUES, "hour").total) == 5004
    assert sum(g.count for g in reader.failure_groups(QUEUES)) == 50
    client.close()
