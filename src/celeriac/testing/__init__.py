"""Public test helpers: private Redis servers (single, Cluster, Sentinel), in-process draining, a
fake clock, a TCP proxy that cuts and heals the link to Redis (network partitions).

The pytest fixtures live in :mod:`celeriac.testing.pytest_plugin` (loaded automatically by pytest).
"""

from .clock import FakeClock
from .drain import DrainResult, drain, drain_async, is_failure
from .procs import descendant_pids
from .proxy import TcpProxy
from .server import RedisServer, free_port, redis_server_binary
from .thread_worker import ThreadWorker
from .topology import RedisCluster, RedisSentinel, free_cluster_port

__all__ = [
    "DrainResult",
    "FakeClock",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "TcpProxy",
    "ThreadWorker",
    "descendant_pids",
    "drain",
    "drain_async",
    "free_cluster_port",
    "free_port",
    "is_failure",
    "redis_server_binary",
]
