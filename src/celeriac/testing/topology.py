"""Private Redis topologies for tests and benchmarks: a Redis Cluster (masters with replicas) and a
Sentinel-watched master with replicas, every process a ``redis-server`` on a free loopback port.

Cluster nodes listen on ports at most :data:`MAX_CLUSTER_PORT`: the cluster bus of a node listens on
its port + 10000, which must still be a valid port that nothing else uses.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .server import RedisServer, redis_server_binary, terminate

#: highest port a cluster node may use (its bus is at port + 10000 <= 65535)
MAX_CLUSTER_PORT = 55_535
#: Redis Cluster's slot count
SLOTS = 16_384


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int] | None = None) -> int:
    """A free loopback port <= :data:`MAX_CLUSTER_PORT` whose bus port (+10000) is free too.

    Drawn at random from 20000-55535 (below Linux's default ephemeral range for the port itself)
    so that parallel test runs rarely draw the same one; ``taken`` ports are never returned.
    """
    taken = taken or set()
    for _ in range(1000):
        port = random.randint(20_000, MAX_CLUSTER_PORT)
        if port in taken or port + 10_000 in taken:
            continue
        if _port_free(port) and _port_free(port + 10_000):
            return port
    raise RuntimeError("no free port pair (port, port + 10000) found below 55535")


def _client(port: int) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, decode_responses=True)


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # a node still starting or failing over answers with errors meanwhile
            pass
        time.sleep(0.05)  # polling a server's state: Redis has no event to await for it
    raise RuntimeError(f"timed out after {timeout_s}s waiting for {what}")


class RedisCluster:
    """A Redis Cluster of ``masters`` masters, each with ``replicas`` replicas, on loopback.

    Slots are split evenly among the masters (``CLUSTER ADDSLOTSRANGE``), nodes are joined with
    ``CLUSTER MEET`` and replicas attached with ``CLUSTER REPLICATE``: what ``redis-cli --cluster
    create`` does, without depending on it. ``node_timeout_ms`` is how long a master may be
    unreachable before its replica is promoted.

    Attributes:
        nodes: every node; the first ``masters`` are the masters at start.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        args: Sequence[str] = (),
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one master and no negative replica count")
        self.masters = masters
        self.replicas = replicas
        taken: set[int] = set()
        self.nodes: list[RedisServer] = []
        for _ in range(masters * (1 + replicas)):
            port = free_cluster_port(taken)
            taken |= {port, port + 10_000}
            self.nodes.append(
                RedisServer(
                    args=[
                        *("--cluster-enabled", "yes"),
                        *("--cluster-config-file", "nodes.conf"),
                        *("--cluster-node-timeout", str(node_timeout_ms)),
                        # a replica takes over however long it was cut off from its master
                        *("--cluster-replica-validity-factor", "0"),
                        *args,
                    ],
                    port=port,
                )
            )

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...`` (every node a startup node)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, timeout_s: float = 30.0) -> RedisCluster:
        for node in self.nodes:
            node.start()
        first = self.nodes[0].port
        for node in self.nodes[1:]:
            _client(node.port).execute_command("CLUSTER", "MEET", "127.0.0.1", str(first))
        per = SLOTS // self.masters
        for i in range(self.masters):
            low = i * per
            high = SLOTS - 1 if i == self.masters - 1 else (i + 1) * per - 1
            _client(self.nodes[i].port).execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        _wait(lambda: all(self._known(n.port) == len(self.nodes) for n in self.nodes), timeout_s, "MEET")
        for r in range(self.replicas):
            for i in range(self.masters):
                replica = self.nodes[self.masters * (1 + r) + i]
                master_id = _client(self.nodes[i].port).execute_command("CLUSTER", "MYID")
                _client(replica.port).execute_command("CLUSTER", "REPLICATE", master_id)
        self.wait_ok(timeout_s)
        return self

    def _known(self, port: int) -> int:
        return len(str(_client(port).execute_command("CLUSTER", "NODES")).strip().splitlines())

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Wait until every live node reports ``cluster_state:ok`` and agrees on the slot owners."""

        def ok() -> bool:
            live = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
            states = [_client(n.port).execute_command("CLUSTER", "INFO") for n in live]
            if not all("cluster_state:ok" in str(s) for s in states):
                return False
            views = {self._slot_view(n.port) for n in live}
            return len(views) == 1

        _wait(ok, timeout_s, "cluster_state:ok on every node")

    def _slot_view(self, port: int) -> tuple[tuple[int, int, int], ...]:
        slots = _client(port).execute_command("CLUSTER", "SLOTS")
        return tuple(sorted((int(s[0]), int(s[1]), int(s[2][1])) for s in slots))

    def master_of(self, slot: int) -> RedisServer:
        """The node that serves ``slot`` now (asked of any live node)."""
        live = next(n for n in self.nodes if n.process is not None and n.process.poll() is None)
        for low, high, port in self._slot_view(live.port):
            if low <= slot <= high:
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no node serves slot {slot}")

    def replica_of(self, master: RedisServer) -> RedisServer:
        """One replica of ``master`` (by the cluster's own view)."""
        master_id = _client(master.port).execute_command("CLUSTER", "MYID")
        for node in self.nodes:
            if node is master or node.process is None or node.process.poll() is not None:
                continue
            info = str(_client(node.port).execute_command("CLUSTER", "NODES"))
            for line in info.splitlines():
                fields = line.split()
                if "myself" in fields[2] and len(fields) > 3 and fields[3] == master_id:
                    return node
        raise LookupError(f"no replica of the node on port {master.port}")

    def kill_master_and_wait_failover(self, slot: int, timeout_s: float = 30.0) -> RedisServer:
        """SIGKILL the master serving ``slot``, wait until a replica serves it; return the new master."""
        old = self.master_of(slot)
        old.kill()
        _wait(lambda: self.master_of(slot) is not old, timeout_s, f"a new master for slot {slot}")
        self.wait_ok(timeout_s)
        return self.master_of(slot)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SentinelProcess:
    """One ``redis-server --sentinel`` on a free port, watching ``master_name``."""

    def __init__(self, directory: Path, master_name: str, master_port: int, quorum: int) -> None:
        self.port = free_cluster_port()
        self.config = directory / f"sentinel-{self.port}.conf"
        self.config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            "protected-mode no\n"
            f"dir {directory}\n"
            f"sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {master_name} 1000\n"
            f"sentinel failover-timeout {master_name} 5000\n"
            f"sentinel parallel-syncs {master_name} 1\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [binary, str(self.config), "--sentinel", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: _client(self.port).ping(), 10, f"sentinel on port {self.port}")

    def stop(self) -> None:
        terminate(self.process)


class RedisSentinel:
    """A master with ``replicas`` replicas, watched by ``sentinels`` Sentinels (quorum: a majority).

    :attr:`url` is Celery's form, ``sentinel://127.0.0.1:p1;sentinel://127.0.0.1:p2;...``, to be used
    with ``broker_transport_options={"master_name": master_name}``.
    """

    def __init__(self, replicas: int = 1, sentinels: int = 3, master_name: str = "mymaster") -> None:
        self.master_name = master_name
        # replicas sync at once (not after the default 5 s diskless-sync delay)
        self.master = RedisServer(port=free_cluster_port(), args=["--repl-diskless-sync-delay", "0"])
        self.replicas = [
            RedisServer(port=free_cluster_port(), args=["--repl-diskless-sync-delay", "0"])
            for _ in range(replicas)
        ]
        self.sentinel_count = sentinels
        self.sentinels: list[SentinelProcess] = []

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self, timeout_s: float = 30.0) -> RedisSentinel:
        self.master.start()
        for replica in self.replicas:
            replica.args += ["--replicaof", "127.0.0.1", str(self.master.port)]
            replica.start()
        _wait(lambda: self._replicas_online(), timeout_s, "replicas connected and synchronised")
        quorum = self.sentinel_count // 2 + 1
        for _ in range(self.sentinel_count):
            sentinel = SentinelProcess(self.master.dir, self.master_name, self.master.port, quorum)
            sentinel.start()
            self.sentinels.append(sentinel)
        _wait(lambda: self._sentinels_see_all(), timeout_s, "sentinels discovering each other")
        return self

    def _replicas_online(self) -> bool:
        # "connected" is not enough: until its first full sync a replica acknowledges nothing (WAIT 0)
        info = _client(self.master.port).info("replication")
        states = [info[f"slave{i}"]["state"] for i in range(int(info["connected_slaves"]))]
        return len(states) == len(self.replicas) and all(s == "online" for s in states)

    def _sentinels_see_all(self) -> bool:
        for s in self.sentinels:
            master = _client(s.port).execute_command("SENTINEL", "MASTER", self.master_name)
            fields = dict(zip(master[::2], master[1::2])) if isinstance(master, list) else master
            if int(fields["num-other-sentinels"]) < len(self.sentinels) - 1:
                return False
            if int(fields["num-slaves"]) < len(self.replicas):
                return False
        return True

    def current_master_port(self) -> int:
        """The master's port as the Sentinels report it now."""
        addr = _client(self.sentinels[0].port).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
        )
        return int(addr[1])

    def kill_master_and_wait_failover(self, timeout_s: float = 30.0) -> RedisServer:
        """SIGKILL the current master; wait until the Sentinels promoted a replica; return it."""
        old_port = self.current_master_port()
        old = next(s for s in self.servers if s.port == old_port)
        old.kill()

        def promoted() -> bool:
            port = self.current_master_port()
            if port == old_port:
                return False
            role = _client(port).execute_command("ROLE")
            return bool(role and role[0] == "master")

        _wait(promoted, timeout_s, "a replica promoted by the sentinels")
        return next(s for s in self.servers if s.port == self.current_master_port())

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()

    def __enter__(self) -> RedisSentinel:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
