"""Every pool's cost per task: sync no-op tasks drained by a real ``celeriac worker`` process.

    .venv/bin/python benchmarks/pools.py                      # every pool, 20k tasks each
    .venv/bin/python benchmarks/pools.py -n 50000 --pools threads,processes --rounds 3
    .venv/bin/python benchmarks/pools.py --cpu                # 5 ms CPU tasks on -P processes -c 2

For each pool: N tasks are queued (``send_many``), then ``celeriac worker --burst`` drains them. The
driver polls the queue's consumer group every 20 ms; the steady-state window runs from the first
poll that sees tasks taken to the first that sees the queue drained (worker start-up and exit are
outside it). In that window it measures:

* tasks/s (wall clock: noisy on a shared machine),
* worker CPU µs/task (utime+stime of the worker's whole process tree, from /proc),
* Redis commands/task and Redis CPU µs/task (``INFO commandstats``; the driver's own polls,
  ``XINFO``/``INFO``, are not counted).

The deterministic figures are commands/task and CPU/task; ``--rounds`` interleaves pools so that
load on the machine spreads over all of them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from celeriac.testing.server import RedisServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLK = os.sysconf("SC_CLK_TCK")

POOLS = {  # name -> worker arguments (the configurations)
    "asyncio": ["-P", "asyncio"],
    "threads": ["-P", "threads", "-c", "8"],
    "gevent": ["-P", "gevent", "-c", "100"],
    "processes": ["-P", "processes", "-c", "2"],
}


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_cpu_s(root: int) -> float:
    """utime+stime of a process tree (live processes; reaped children count in their parent's cutime)."""
    total = 0
    for p in _tree(root):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK


def commandstats(r: redis.Redis) -> tuple[int, float, dict[str, int]]:
    calls = usec = 0
    per: dict[str, int] = {}
    for name, v in r.info("commandstats").items():
        if name.removeprefix("cmdstat_").split("|")[0] in ("info", "xinfo"):
            continue
        calls += int(v["calls"])
        usec += float(v["usec"])
        per[name] = int(v["calls"])
    return calls, usec, per


def progress(r: redis.Redis, stream: str) -> tuple[int, int]:
    """(entries delivered so far, pending): from the consumer group."""
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:
        return 0, 0
    for g in groups:
        return int(g.get("entries-read") or 0), int(g["pending"])
    return 0, 0


def measure(url: str, pool: str, n: int, task: str, args: list[Any], extra: list[str]) -> dict[str, Any]:
    env = dict(
        os.environ,
        POOLBENCH_REDIS_URL=url,
        PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    r = redis.Redis.from_url(url)
    r.flushall()
    os.environ["POOLBENCH_REDIS_URL"] = url
    sys.path.insert(0, str(HERE))
    import pools_tasks

    pools_tasks.app.conf  # noqa: B018  (configured from the environment above)
    t = getattr(pools_tasks, task)
    for i in range(0, n, 20_000):
        pools_tasks.app.send_many([t.s(*args) for _ in range(min(20_000, n - i))])
    stream = next(k.decode() for k in r.scan_iter(match="*:ready"))
    argv = [str(ROOT / ".venv/bin/celeriac"), "-A", "pools_tasks:app", "worker", "--burst", "-l", "warning"]
    proc = subprocess.Popen([*argv, *POOLS[pool], *extra], env=env, cwd=HERE)
    start = first = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            read, pending = progress(r, stream)
            now = time.perf_counter()
            if start is None and read > 0:
                start = (now, read - pending, tree_cpu_s(proc.pid), *commandstats(r))
            if start is not None and read >= n and pending == 0:
                first = (now, n, tree_cpu_s(proc.pid), *commandstats(r))
                break
            if proc.poll() is not None and start is None:
                raise RuntimeError(f"worker exited with {proc.returncode} before taking a task")
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if start is None or first is None:
        raise RuntimeError(f"{pool}: did not drain {n} tasks in time")
    done = first[1] - start[1]
    dt = first[0] - start[0]
    return {
        "pool": pool,
        "tasks": done,
        "rate": done / dt,
        "cpu_us": (first[2] - start[2]) / done * 1e6,
        "cmds": (first[3] - start[3]) / done,
        "redis_us": (first[4] - start[4]) / done,
        "window_s": dt,
        "per_command": {
            k: round((v - start[5].get(k, 0)) / done, 3)
            for k, v in first[5].items()
            if v != start[5].get(k, 0)
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000, help="tasks per measurement")
    ap.add_argument("--pools", default=",".join(POOLS))
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median shown)")
    ap.add_argument("--cpu", action="store_true", help="5 ms CPU tasks on -P processes -c 2 (core use)")
    ap.add_argument("--commands", action="store_true", help="also print Redis commands/task by command")
    a = ap.parse_args()
    rows: dict[str, list[dict[str, Any]]] = {}
    with RedisServer() as server:
        for _ in range(a.rounds):
            if a.cpu:
                m = measure(server.url, "processes", a.n if a.n < 20_000 else 1_000, "cpu", [5.0], [])
                m["cores"] = m["rate"] * 0.005
                rows.setdefault("processes-cpu", []).append(m)
                print(
                    f"processes -c 2, 5 ms CPU tasks: {m['rate']:.0f}/s = {m['cores']:.2f} cores busy; "
                    f"worker tree CPU {m['cpu_us']:.0f} us/task ({5000 / m['cpu_us']:.0%} of it task work)",
                    flush=True,
                )
                continue
            for pool in a.pools.split(","):
                m = measure(server.url, pool, a.n, "noop", [1, 2], [])
                rows.setdefault(pool, []).append(m)
                print(
                    f"{pool:10} {m['rate']:9.0f}/s  worker CPU {m['cpu_us']:7.1f} us/task  "
                    f"Redis {m['cmds']:5.3f} cmd/task {m['redis_us']:6.2f} us/task",
                    flush=True,
                )
                if a.commands:
                    print(f"{'':10} {m['per_command']}", flush=True)
    if a.rounds > 1:
        print("\nmedians:")
        for pool, ms in rows.items():
            med = {k: sorted(m[k] for m in ms)[len(ms) // 2] for k in ("rate", "cpu_us", "cmds", "redis_us")}
            print(
                f"{pool:10} {med['rate']:9.0f}/s  worker CPU {med['cpu_us']:7.1f} us/task  "
                f"Redis {med['cmds']:5.3f} cmd/task {med['redis_us']:6.2f} us/task"
            )


if __name__ == "__main__":
    main()
