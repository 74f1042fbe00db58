"""The test topologies themselves: a private Redis Cluster and a Sentinel-watched master start, serve,
and fail over, so that the Cluster and Sentinel tests can rely on them."""

from __future__ import annotations

import pytest

from celeriac.testing import RedisCluster, RedisSentinel, free_cluster_port
from celeriac.testing.topology import MAX_CLUSTER_PORT

pytestmark = pytest.mark.redis


def test_cluster_ports_leave_room_for_the_bus() -> None:
    for _ in range(50):
        port = free_cluster_port()
        assert port <= MAX_CLUSTER_PORT
        assert port + 10_000 <= 65_535


def test_a_cluster_of_three_masters_with_replicas_serves_and_fails_over() -> None:
    import redis

    with RedisCluster(masters=3, replicas=1) as cluster:
        assert len(cluster.nodes) == 6
        assert all(p <= MAX_CLUSTER_PORT for p in cluster.ports)
        client = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        for i in range(30):  # keys over every master
            client.set(f"k{i}", i)
        owners = {cluster.master_of(client.keyslot(f"k{i}")).port for i in range(30)}
        assert owners == set(cluster.ports[:3])
        slot = client.keyslot("k0")
        old = cluster.master_of(slot)
        client.execute_command("WAIT", 1, 2000, target_nodes=redis.RedisCluster.ALL_NODES)
        new = cluster.kill_master_and_wait_failover(slot)
        assert new is not old and new.port in cluster.ports[3:]
        after = redis.RedisCluster(host="127.0.0.1", port=new.port)
        assert after.get("k0") == b"0"  # replicated (WAIT) before the kill, so it survived
        client.close()
        after.close()


def test_sentinels_promote_a_replica_when_the_master_dies() -> None:
    import redis

    with RedisSentinel(replicas=1, sentinels=3) as topo:
        assert topo.url.count("sentinel://") == 3
        first = topo.current_master_port()
        assert first == topo.master.port
        new = topo.kill_master_and_wait_failover()
        assert new.port != first
        assert redis.Redis(port=new.port).execute_command("ROLE")[0] == b"master"
