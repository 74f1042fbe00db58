"""Capacity-planning figures for docs/capacity.md, on private Redis servers started here.

    .venv/bin/python benchmarks/capacity.py            # about 2-4 minutes
    .venv/bin/python benchmarks/capacity.py -n 20000   # fewer tasks per measurement

Measures, and prints as JSON (also written to benchmarks/results/capacity.json):

* bytes of Redis memory per queued ``add(1, 2)`` (``INFO memory`` before/after queuing N);
* the date (UTC), the load average at start and end, and the command (the machine may be shared);
* Redis CPU per task while one worker drains N no-op tasks, per pool: ``INFO commandstats`` usec
  summed over every command, and ``used_cpu_user + used_cpu_sys`` (the whole server), each / N;
* drain throughput of one sharded queue on a 3-master Redis Cluster with 1, 2 and 3 shards (one
  worker process per shard), and the Redis CPU per task on each master;
* the seeds' fan-out: requests that each send 19 tasks in one batch (Redis CPU per request and task);
* the cost of durable sends: single sends per second with ``broker_wait_replicas`` 0 and 1 (a master
  with one replica on loopback).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from celeriac import Celeriac, Worker  # noqa: E402
from celeriac.broker.base import Enqueue  # noqa: E402
from celeriac.testing import RedisCluster, RedisServer  # noqa: E402


def make_app(url: str, **settings: Any) -> Celeriac:
    app = Celeriac("bench", broker=url, result_backend="disabled", from_env=False, **settings)

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    return app


def bulk_queue(app: Celeriac, n: int, queue: str = "default") -> None:
    """N messages of add(1, 2) through the broker's bulk path (what a group or a batch send uses)."""
    add = app.tasks["tasks.add"]
    captured: list[Enqueue] = []
    real = app.broker.enqueue
    app.broker.enqueue = captured.append  # type: ignore[method-assign]
    try:
        add.apply_async((1, 2), queue=queue)
    finally:
        app.broker.enqueue = real  # type: ignore[method-assign]
    item = captured[0]
    for start in range(0, n, 10_000):
        app.broker.enqueue_many([Enqueue(queue, item.data)] * min(10_000, n - start))


def commandstats_usec(client: Any) -> float:
    return sum(float(v["usec"]) for k, v in client.info("commandstats").items() if k.startswith("cmdstat_"))


def server_cpu_s(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measure_memory(n: int) -> dict[str, Any]:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        app = make_app(server.url)
        before = int(client.info("memory")["used_memory"])
        bulk_queue(app, n)
        after = int(client.info("memory")["used_memory"])
        app.close()
        per = (after - before) / n
        return {"tasks": n, "bytes_per_task": round(per, 1), "per_million_mib": round(per * 1e6 / 2**20, 1)}


_GEVENT_DRAIN = """
from gevent import monkey
monkey.patch_all()
import sys
sys.path.insert(0, {src!r})
from celeriac import Celeriac, Worker
app = Celeriac("bench", broker={url!r}, result_backend="disabled", from_env=False)
app.task(name="tasks.add")(lambda x, y: x + y)
Worker(app, concurrency={concurrency}, pool="gevent", burst=True).start()
app.close()
"""


def measure_pool(n: int, pool: str, concurrency: int) -> dict[str, Any]:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        app = make_app(server.url)
        bulk_queue(app, n)
        usec0, cpu0 = commandstats_usec(client), server_cpu_s(client)
        t0 = time.perf_counter()
        if pool == "gevent":  # gevent needs its monkey-patching first: a fresh interpreter
            code = _GEVENT_DRAIN.format(src=str(HERE.parent / "src"), url=server.url, concurrency=concurrency)
            subprocess.run([sys.executable, "-c", code], check=True)
        else:
            Worker(app, concurrency=concurrency, pool=pool, burst=True).start()
        elapsed = time.perf_counter() - t0
        usec, cpu = commandstats_usec(client) - usec0, server_cpu_s(client) - cpu0
        calls = sum(
            int(v["calls"]) for k, v in client.info("commandstats").items() if k.startswith("cmdstat_")
        )
        app.close()
        return {
            "pool": pool,
            "concurrency": concurrency,
            "tasks": n,
            "tasks_per_s": round(n / elapsed),
            "commandstats_usec_per_task": round(usec / n, 2),
            "server_cpu_usec_per_task": round(cpu * 1e6 / n, 2),
            "commands_total": calls,
        }


def _drain_process(url: str, shards: int) -> None:
    # not burst mode: a burst worker polls without blocking, which would measure the polling
    app = make_app(url, queue_shards={"hot": shards})
    Worker(app, queues=["hot"], concurrency=200, pool="asyncio").start()


def measure_shards(n: int) -> list[dict[str, Any]]:
    out = []
    with RedisCluster(masters=3, replicas=0) as cluster:
        for shards in (1, 2, 3):
            admin = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
            admin.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
            app = make_app(cluster.url, queue_shards={"hot": shards})
            bulk_queue(app, n, "hot")
            nodes = [redis.Redis(port=p) for p in cluster.ports[:3]]
            usec0 = [commandstats_usec(c) for c in nodes]
            t0 = time.perf_counter()
            procs = [
                multiprocessing.Process(target=_drain_process, args=(cluster.url, shards))
                for _ in range(shards)
            ]
            for p in procs:
                p.start()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                s = app.broker.stats("hot")
                if s.ready == 0 and s.running == 0:
                    break
                time.sleep(0.02)
            elapsed = time.perf_counter() - t0
            for p in procs:
                p.terminate()
                p.join()
            left = app.broker.stats("hot").ready
            usec = [commandstats_usec(c) - u for c, u in zip(nodes, usec0)]
            app.close()
            admin.close()
            out.append(
                {
                    "shards": shards,
                    "worker_processes": shards,
                    "tasks": n,
                    "left": left,
                    "tasks_per_s": round((n - left) / elapsed),
                    "redis_usec_per_task_by_master": [round(u / n, 2) for u in usec],
                    "redis_usec_per_task_total": round(sum(usec) / n, 2),
                }
            )
    return out


def measure_fanout(requests: int, fan: int) -> dict[str, Any]:
    """The seeds' shape: each request sends ``fan`` tasks in one batch (the bulk path a group uses)."""
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        app = make_app(server.url)
        add = app.tasks["tasks.add"]
        captured: list[Enqueue] = []
        real = app.broker.enqueue
        app.broker.enqueue = captured.append  # type: ignore[method-assign]
        try:
            add.apply_async((1, 2))
        finally:
            app.broker.enqueue = real  # type: ignore[method-assign]
        batch = [Enqueue("default", captured[0].data)] * fan
        app.broker.enqueue_many(batch)  # connect, load the script
        cpu0 = server_cpu_s(client)
        t0 = time.perf_counter()
        for _ in range(requests):
            app.broker.enqueue_many(batch)
        elapsed = time.perf_counter() - t0
        cpu = server_cpu_s(client) - cpu0
        app.close()
        return {
            "requests": requests,
            "tasks_per_request": fan,
            "requests_per_s": round(requests / elapsed),
            "tasks_per_s": round(requests * fan / elapsed),
            "server_cpu_usec_per_request": round(cpu * 1e6 / requests, 1),
            "server_cpu_usec_per_task": round(cpu * 1e6 / (requests * fan), 2),
        }


def measure_durable(n: int) -> dict[str, Any]:
    master = RedisServer(args=["--repl-diskless-sync-delay", "0"]).start()
    replica = RedisServer(args=["--replicaof", "127.0.0.1", str(master.port)])
    try:
        with replica:
            client = redis.Redis.from_url(master.url)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                info = client.info("replication")
                if info.get("connected_slaves") and info["slave0"]["state"] == "online":
                    break
                time.sleep(0.05)
            rates = {}
            for wait in (0, 1):
                app = make_app(master.url, broker_wait_replicas=wait)
                add = app.tasks["tasks.add"]
                add.delay(1, 2)  # connect
                t0 = time.perf_counter()
                for _ in range(n):
                    add.delay(1, 2)
                rates[f"wait_replicas_{wait}"] = {
                    "sends_per_s": round(n / (time.perf_counter() - t0)),
                    "us_per_send": round((time.perf_counter() - t0) / n * 1e6, 1),
                }
                app.close()
            return rates
    finally:
        master.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=50_000, help="tasks per measurement")
    parser.add_argument(
        "--only", choices=["shards", "fanout"], help="run one measurement only (printed, not written)"
    )
    args = parser.parse_args()
    n = args.n
    if args.only == "fanout":
        print(
            json.dumps(
                {"when_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "load": os.getloadavg()}
            )
        )
        print(json.dumps(measure_fanout(max(1000, n // 10), 19)))
        return
    if args.only == "shards":
        print(
            json.dumps(
                {"when_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "load": os.getloadavg()}
            )
        )
        for row in measure_shards(n):
            print(json.dumps(row), flush=True)
        return
    results: dict[str, Any] = {
        "n": n,
        "when_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "load_average_at_start": os.getloadavg(),
        "cpus": os.cpu_count(),
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
    }
    print(json.dumps(results), flush=True)
    results["memory"] = measure_memory(max(n, 100_000))
    print(json.dumps(results["memory"]), flush=True)
    results["pools"] = []
    for pool, concurrency in (("asyncio", 200), ("threads", 8), ("gevent", 100), ("processes", 2)):
        row = measure_pool(n if pool != "processes" else max(2000, n // 10), pool, concurrency)
        results["pools"].append(row)
        print(json.dumps(row), flush=True)
    results["shards"] = measure_shards(n)
    for row in results["shards"]:
        print(json.dumps(row), flush=True)
    results["fanout"] = measure_fanout(max(1000, n // 10), 19)
    print(json.dumps(results["fanout"]), flush=True)
    results["durable_sends"] = measure_durable(max(2000, n // 10))
    print(json.dumps(results["durable_sends"]), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    print(json.dumps({"load_average_at_end": results["load_average_at_end"]}), flush=True)
    out = HERE / "results" / "capacity.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
