"""Periodic tasks and flow control, measured on a private redis-server with real processes.

* lateness of periodic slots: N schedulers (``celeriac beat`` processes) run one 1 s entry next to one
  idle worker; for each slot, how long after its due time the task started (p50 / p99), N = 1, 3, 10;
* idle cost: Redis commands per second of one scheduler whose only entry is far away (``INFO
  commandstats``, the INFO calls themselves excluded), and of an idle worker with and without ``-B``;
* rate-limit overhead: one worker drains N queued no-op tasks, plain and with a rate limit so high it
  never defers (the gate's cost alone: one batched script call per fetch), in tasks per second.

    .venv/bin/python benchmarks/beat_flow.py [--seconds 30] [--drain 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import redis

from celeriac import Celeriac, Signature
from celeriac.testing import RedisServer

TASKS = textwrap.dedent(
    """
    import os, time
    import redis
    from celeriac import Celeriac

    app = Celeriac("bf")
    app.conf.beat_schedule = {
        "every-second": {"task": "bf.slot", "schedule": float(os.environ.get("BF_PERIOD", "1"))},
    } if os.environ.get("BF_BEAT") == "1" else {
        "daily": {"task": "bf.slot", "schedule": "0 4 * * *"},
    }
    _r = redis.Redis.from_url(app.conf.broker_url)

    @app.task(name="bf.slot", bind=True)
    def slot(self):
        _r.rpush("slots", f"{self.request.id} {time.time():.4f}")

    @app.task(name="bf.plain")
    async def plain(i):
        pass

    @app.task(name="bf.limited", rate_limit="1000000/s")
    async def limited(i):
        pass
    """
)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Env:
    def __init__(self, url: str, directory: str) -> None:
        self.url = url
        self.dir = directory
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celeriac.cli", *args, "-A", "bf_tasks:app", "-l", "warning"],
            cwd=self.dir,
            env={**os.environ, "PYTHONPATH": self.dir, "CELERIAC_BROKER_URL": self.url, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(30)
        self.procs = []


def commands(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def lateness(env: Env, r: redis.Redis, schedulers: int, seconds: float) -> dict[str, float]:
    from celeriac.beat.entries import configured_entries

    r.flushall()
    os.environ["BF_BEAT"] = "1"
    sys.path.insert(0, env.dir)
    import bf_tasks  # type: ignore[import-not-found]

    entry = configured_entries(bf_tasks.app, check_task=True)["every-second"]
    env.start("worker", "-c", "10", BF_BEAT="1")
    for _ in range(schedulers):
        env.start("beat", BF_BEAT="1")
    deadline = time.time() + 60
    while r.llen("slots") < 3 and time.time() < deadline:  # every process started and running
        time.sleep(0.1)
    time.sleep(2)
    r.delete("slots")
    t0 = time.time()
    time.sleep(seconds)
    t1 = time.time()
    time.sleep(1.5)
    env.stop()
    runs = [line.decode().split() for line in r.lrange("slots", 0, -1)]
    ids = {entry.task_id(s * 1000): s for s in range(int(t0) + 1, int(t1))}
    late = [float(at) - ids[tid] for tid, at in runs if tid in ids]
    seen = {tid for tid, _ in runs if tid in ids}
    return {
        "schedulers": schedulers,
        "slots": len(ids),
        "fired": len(seen),
        "runs": len(late),
        "p50_ms": round(pct(late, 50) * 1000, 1),
        "p99_ms": round(pct(late, 99) * 1000, 1),
        "max_ms": round(max(late) * 1000, 1),
    }


def idle_cost(env: Env, r: redis.Redis, what: str, args: list[str], seconds: float) -> dict[str, float]:
    r.flushall()
    env.start(*args, BF_BEAT="0")
    time.sleep(3)
    before = commands(r)
    time.sleep(seconds)
    after = commands(r)
    env.stop()
    return {"process": what, "commands_per_s": round((after - before) / seconds, 2)}


def drain(env: Env, url: str, r: redis.Redis, task: str, n: int) -> dict[str, float]:
    r.flushall()
    producer = Celeriac(broker=url)
    producer.send_many(Signature(task, (i,), app=producer) for i in range(n))
    before = commands(r)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "worker", "-A", "bf_tasks:app", "-l", "warning", "--burst"],
        cwd=env.dir,
        env={**os.environ, "PYTHONPATH": env.dir, "CELERIAC_BROKER_URL": url, "BF_BEAT": "0"},
        capture_output=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    del proc
    after = commands(r)
    producer.close()
    return {
        "task": task,
        "tasks": n,
        "tasks_per_s_with_startup": round(n / elapsed),
        "redis_commands_per_task": round((after - before) / n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each lateness run")
    parser.add_argument("--drain", type=int, default=20_000, help="tasks per drain run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    out: dict[str, object] = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as server:
        Path(tmp, "bf_tasks.py").write_text(TASKS)
        env = Env(server.url, tmp)
        r = redis.Redis.from_url(server.url)
        out["lateness"] = [lateness(env, r, n, args.seconds) for n in (1, 3, 10)]
        for row in out["lateness"]:  # type: ignore[attr-defined]
            print("lateness", json.dumps(row), flush=True)
        out["idle"] = [
            idle_cost(env, r, "celeriac beat (one daily entry)", ["beat"], 20),
            idle_cost(env, r, "celeriac worker", ["worker"], 20),
            idle_cost(env, r, "celeriac worker -B (one daily entry)", ["worker", "-B"], 20),
        ]
        for row in out["idle"]:  # type: ignore[attr-defined]
            print("idle", json.dumps(row), flush=True)
        rows = []
        for _ in range(3):  # interleaved rounds; the median of each is shown
            rows.append(drain(env, server.url, r, "bf.plain", args.drain))
            rows.append(drain(env, server.url, r, "bf.limited", args.drain))
        for task in ("bf.plain", "bf.limited"):
            mine = sorted((x for x in rows if x["task"] == task), key=lambda x: x["tasks_per_s_with_startup"])
            median = mine[len(mine) // 2]
            print("drain", json.dumps(median), flush=True)
        out["drain"] = rows
        r.close()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
