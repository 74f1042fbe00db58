"""celeriac on a real Redis Cluster (3 masters, 1 replica each, private ports <= 55535): queues spread
over the masters, results through the separate fenced path, sharded queues, a slot migrated while a
worker runs, and a master failover, all without restarting the worker or losing a task."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.crc
from tests.support import running

from celeriac import Celeriac
from celeriac.broker.base import Settlement
from celeriac.exceptions import BrokerError
from celeriac.testing import RedisCluster

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SEEN: dict[str, list[int]] = {}
LOCK = threading.Lock()


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(masters=3, replicas=1) as c:
        yield c


def _client(cluster: RedisCluster) -> Any:
    return redis.RedisCluster(host="127.0.0.1", port=cluster.master_of(0).port)


def _app(cluster: RedisCluster, **settings: Any) -> Celeriac:
    client = _client(cluster)
    client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    client.close()
    SEEN.clear()
    app = Celeriac("cl", broker=cluster.url, from_env=False, task_ignore_result=False, **settings)

    @app.task(name="record")
    def record(key: str, i: int) -> int:
        with LOCK:
            SEEN.setdefault(key, []).append(i)
        return i

    return app


def test_queues_spread_over_masters_and_results_take_the_fenced_path(cluster: RedisCluster) -> None:
    app = _app(cluster)
    record = app.tasks["record"]
    broker = app.broker
    queues = ["a", "b", "c", "d", "e", "f"]
    client = _client(cluster)
    owners = {cluster.master_of(client.keyslot(broker.keys.queue(q).ready)).port for q in queues}
    client.close()
    assert len(owners) >= 2, "the queues' hash tags should land on several masters"
    assert not app.results_travel_with(broker.for_worker())  # result keys are in other slots
    with running(app, queues=queues, concurrency=8):
        results = [record.apply_async(("x", i), queue=queues[i % 6]) for i in range(60)]
        mine = record.apply_async(("x", 999), queue="c", task_id="user-chosen-id")
        assert [r.get(timeout=30) for r in results] == list(range(60))
        assert mine.id == "user-chosen-id"
        assert app.AsyncResult("user-chosen-id").get(timeout=30) == 999
    app.close()


def test_a_sharded_queue_spreads_over_slots_and_every_shard_is_consumed(cluster: RedisCluster) -> None:
    app = _app(cluster, queue_shards={"hot": 3})
    record = app.tasks["record"]
    broker = app.broker
    client = _client(cluster)
    slots = {client.keyslot(broker.keys.queue(s).ready) for s in broker.shards("hot")}
    client.close()
    assert len(slots) == 3
    for i in range(300):
        record.apply_async(("hot", i), queue="hot", ignore_result=True)
    lengths = [broker._stats(s).ready for s in broker.shards("hot")]  # each shard alone
    assert lengths == [100, 100, 100]
    assert broker.stats("hot").ready == 300
    with running(app, queues=["hot"], concurrency=8) as worker:
        worker.wait_outcomes(lambda o: len(o) >= 300, timeout_s=60)
    assert sorted(SEEN["hot"]) == list(range(300))
    assert broker.stats("hot").ready == 0
    app.close()


def test_tasks_in_shards_of_an_earlier_setting_still_run(cluster: RedisCluster) -> None:
    """queue_shards lowered from 3 to none: the old shards, on other masters, are found (from the
    settings recorded in the queue's slot) and consumed by the worker."""
    app = _app(cluster)  # (each _app flushes the cluster: both made before anything is sent)
    before = _app(cluster, queue_shards={"hot": 3})
    for i in range(30):
        before.tasks["record"].apply_async(("hot", i), queue="hot", ignore_result=True)
    assert [before.broker._stats(s).ready for s in before.broker.shards("hot")] == [10, 10, 10]
    before.close()
    with running(app, queues=["hot"], concurrency=8) as worker:
        worker.wait_outcomes(lambda o: len(o) >= 30, timeout_s=60)
    assert sorted(SEEN["hot"]) == list(range(30))
    app.close()


def _migrate_slot(cluster: RedisCluster, slot: int) -> tuple[int, int]:
    """Move ``slot`` to another master the way ``redis-cli --cluster reshard`` does: IMPORTING /
    MIGRATING, MIGRATE the keys in batches, then SETSLOT NODE on every master."""
    source = cluster.master_of(slot)
    target = next(cluster.master_of(s) for s in (0, 8000, 16000) if cluster.master_of(s) is not source)
    src = redis.Redis(port=source.port, decode_responses=True)
    dst = redis.Redis(port=target.port, decode_responses=True)
    src_id, dst_id = src.execute_command("CLUSTER", "MYID"), dst.execute_command("CLUSTER", "MYID")
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    while True:
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        if not keys:
            break
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        time.sleep(0.05)  # a window in which clients meet ASK redirections
    for port in {n.port for n in (cluster.master_of(0), cluster.master_of(8000), cluster.master_of(16000))}:
        redis.Redis(port=port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    src.close()
    dst.close()
    cluster.wait_ok()
    return source.port, target.port


def _produce(record: Any, key: str, stop: threading.Event, sent: list[int], errors: list[str]) -> None:
    i = 0
    while not stop.is_set():
        try:
            record.apply_async((key, i), queue="mig", ignore_result=True)
            sent.append(i)
        except Exception as exc:  # a send that raised is not counted as sent
            errors.append(repr(exc))
        i += 1
        time.sleep(0.002)


def test_a_slot_migrated_while_a_worker_runs_loses_nothing(cluster: RedisCluster) -> None:
    app = _app(cluster)
    record = app.tasks["record"]
    slot = _client(cluster).keyslot(app.broker.keys.queue("mig").ready)
    stop = threading.Event()
    sent: list[int] = []
    errors: list[str] = []
    with running(app, queues=["mig"], concurrency=4) as worker:
        producer = threading.Thread(target=_produce, args=(record, "mig", stop, sent, errors))
        producer.start()
        time.sleep(0.5)
        before, after = _migrate_slot(cluster, slot)
        time.sleep(0.5)
        stop.set()
        producer.join()
        assert cluster.master_of(slot).port == after != before
        worker.wait_outcomes(lambda o: len({x for x in SEEN.get("mig", [])}) >= len(sent), timeout_s=60)
    assert set(SEEN["mig"]) >= set(sent)
    assert len(sent) > 50
    app.close()


def _queue_on_each_replicated_master(cluster: RedisCluster, broker: Any) -> dict[int, str]:
    """master port -> a queue whose slot it serves, for each master that has a live replica."""
    found: dict[int, str] = {}
    for i in range(2000):
        name = f"w{i}"
        master = cluster.master_of(redis.crc.key_slot(broker.keys.queue(name).ready.encode()))
        if master.port in found:
            continue
        try:
            cluster.replica_of(master)
        except LookupError:  # a master promoted by an earlier test has no replica left
            continue
        found[master.port] = name
    assert len(found) >= 2, "need two masters with a replica"
    for port in found:  # a replica just attached is still in its first sync: WAIT counts it after
        master = redis.Redis(port=port)
        deadline = time.monotonic() + 30
        while master.set(f"{broker.keys.queue(found[port]).ready}:probe", 1, px=1000) and (
            master.execute_command("WAIT", 1, 100) < 1
        ):
            assert time.monotonic() < deadline, f"the replica of {port} never caught up"
        master.close()
    return found


def test_wait_replicas_confirms_each_write_on_the_node_that_took_it(cluster: RedisCluster) -> None:
    """broker_wait_replicas=1 on a cluster: sends (one, many, delayed) and the worker's settles run
    with a WAIT behind each node's writes, on that node's connection. With one master's replica
    stopped, sends to that master's queue fail (its WAIT counts 0 replicas) and so does a settle of a
    delivery of that queue, while the other masters' take theirs: each WAIT went to the node that took
    the write, not to any node."""
    app = _app(cluster, broker_wait_replicas=1, broker_wait_timeout_s=0.5)
    record = app.tasks["record"]
    by_master = _queue_on_each_replicated_master(cluster, app.broker)
    queues = list(by_master.values())
    with running(app, queues=queues, concurrency=4):
        results = [record.apply_async(("w", i), queue=q) for i, q in enumerate(queues)]
        results += app.send_many([record.s("w", 10 + i).set(queue=q) for i, q in enumerate(queues)])
        results += [record.apply_async(("w", 20 + i), queue=q, countdown=0.1) for i, q in enumerate(queues)]
        assert sorted(r.get(timeout=30) for r in results) == sorted(
            [i for i in range(len(queues))]
            + [10 + i for i in range(len(queues))]
            + [20 + i for i in range(len(queues))]
        )
    (stopped_port, stopped_queue), *others = by_master.items()
    replica = cluster.replica_of(next(n for n in cluster.nodes if n.port == stopped_port))
    assert replica.process is not None
    for q in queues:  # one message waiting in each queue, for the settles below
        record.apply_async(("s", 0), queue=q, ignore_result=True)
    replica.process.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(BrokerError, match="only 0 of 1 replica"):
            record.apply_async(("x", 0), queue=stopped_queue, ignore_result=True)
        with pytest.raises(BrokerError, match="only 0 of 1 replica"):
            app.send_many([record.s("x", 1).set(queue=stopped_queue)])
        for _port, q in others:
            record.apply_async(("x", 2), queue=q, ignore_result=True)
            app.send_many([record.s("x", 3).set(queue=q)])
        settled = asyncio.run(_settle_one_of_each(app, queues))
    finally:
        replica.process.send_signal(signal.SIGCONT)
    assert isinstance(settled[stopped_queue], BrokerError), settled
    assert all(settled[q] is None for _port, q in others), settled
    app.close()


async def _settle_one_of_each(app: Celeriac, queues: list[str]) -> dict[str, BaseException | None]:
    """Fetch one delivery of each queue and ack it alone: None, or what the settle raised."""
    broker = app.broker.for_worker(max_owned=10)
    await broker.open(queues)
    out: dict[str, BaseException | None] = {}
    try:
        for q in queues:
            (d,) = await broker.fetch([q], "tester", 1, 0)
            try:
                await broker.settle("tester", [Settlement(d)])
                out[q] = None
            except BrokerError as exc:
                out[q] = exc
    finally:
        await broker.close()
    return out


def test_a_master_failover_while_a_worker_runs_loses_no_replicated_task(cluster: RedisCluster) -> None:
    app = _app(cluster)
    record = app.tasks["record"]
    broker = app.broker
    client = _client(cluster)
    slot = client.keyslot(broker.keys.queue("fo").ready)
    with running(app, queues=["fo"], concurrency=4) as worker:
        for i in range(50):
            record.apply_async(("fo", i), queue="fo", ignore_result=True)
        worker.wait_outcomes(lambda o: len(o) >= 50, timeout_s=30)
        for i in range(50, 100):  # queued while the worker is busy elsewhere? no: queued now,
            record.apply_async(("fo", i), queue="fo", ignore_result=True)
        # replicated before the kill: these must survive the failover (async replication otherwise)
        client.execute_command(
            "WAIT", 1, 2000, target_nodes=cluster_node(client, cluster.master_of(slot).port)
        )
        cluster.kill_master_and_wait_failover(slot)
        for i in range(100, 150):  # sent after the failover, to the promoted replica
            record.apply_async(("fo", i), queue="fo", ignore_result=True)
        worker.wait_outcomes(lambda o: set(range(150)) <= set(SEEN.get("fo", [])), timeout_s=60)
    client.close()
    app.close()


def cluster_node(client: Any, port: int) -> Any:
    return client.get_node(host="127.0.0.1", port=port)


def test_priorities_unique_tasks_and_revokes_work_on_a_cluster(cluster: RedisCluster) -> None:
    app = _app(cluster)
    record = app.tasks["record"]
    later = record.apply_async(("ctl", -1), queue="ctl", countdown=2)
    app.control.revoke(later.id)  # result keys in their own slots: written by a cluster pipeline
    with running(app, queues=["ctl"], concurrency=2):
        assert record.apply_async(("ctl", 1), queue="ctl", priority=5).get(timeout=30) == 1
        assert record.apply_async(("ctl", 2), queue="ctl", unique_key="u").get(timeout=30) == 2
        time.sleep(3)  # the revoked task came due meanwhile
    assert -1 not in SEEN.get("ctl", [])
    app.close()
