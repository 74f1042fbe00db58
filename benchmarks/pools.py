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
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
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


def proc_cpu_s(pid: int) -> float:
    """utime+stime of one process (not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:13]) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


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
                start = (now, read - pending, tree_cpu_s(proc.pid), *commandstats(r), proc_cpu_s(proc.pid))
            if start is not None and read >= n and pending == 0:
                first = (now, n, tree_cpu_s(proc.pid), *commandstats(r), proc_cpu_s(proc.pid))
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
    return _figures(pool, start, first)


CELERY_VENV = HERE / ".peers-venv" / "celery-pools"
CELERY_REQUIREMENTS = ["celery[redis]==5.7.0", "hiredis==3.5.0", "gevent==26.9.0"]
CELERY_POOLS = {  # name -> Celery worker arguments (its defaults: prefetch x4, early ack)
    "celery-prefork": ["-P", "prefork", "-c", "2"],
    "celery-gevent": ["-P", "gevent", "-c", "100"],
    "celery-threads": ["-P", "threads", "-c", "8"],
}


def celery_python() -> Path:
    """Celery's virtualenv (``.peers-venv/celery-pools``, made as ``run.py`` makes its peers')."""
    sys.path.insert(0, str(HERE))
    import run

    py, error = run.ensure_venv("celery-pools", CELERY_REQUIREMENTS)
    if py is None:
        raise RuntimeError(f"Celery's virtualenv: {error}")
    return Path(py)


def measure_celery(url: str, pool: str, n: int, task: str, args: list[Any]) -> dict[str, Any]:
    """The same window and figures as :func:`measure`, for a Celery worker (kombu's Redis transport:
    the queue is the list ``celery``, taken messages wait in the hash ``unacked`` until acked)."""
    py = celery_python()
    env = dict(os.environ, POOLBENCH_REDIS_URL=url, PYTHONPATH=str(HERE))
    r = redis.Redis.from_url(url)
    r.flushall()
    subprocess.run(
        [str(py), str(HERE / "pools_celery.py"), "send", str(n), task, *map(str, args)], env=env, check=True
    )
    argv = [str(py.parent / "celery"), "-A", "pools_celery", "worker", "-l", "warning", *CELERY_POOLS[pool]]
    proc = subprocess.Popen(argv, env=env, cwd=HERE, stdout=subprocess.DEVNULL)
    polls = 0

    def sample(done: int) -> tuple[Any, ...]:
        calls, usec, per = commandstats(r)
        mine = 2 * polls  # this driver's LLEN and HLEN
        return (
            time.perf_counter(),
            done,
            tree_cpu_s(proc.pid),
            calls - mine,
            usec,
            per,
            proc_cpu_s(proc.pid),
        )

    start = first = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            waiting, taken = r.llen("celery"), r.hlen("unacked")
            polls += 1
            if start is None and waiting < n:
                start = sample(n - waiting - taken)
            if start is not None and waiting == 0 and taken == 0:
                first = sample(n)
                break
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {proc.returncode}")
            time.sleep(0.02)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if start is None or first is None:
        raise RuntimeError(f"{pool}: did not drain {n} tasks in time")
    return _figures(pool, start, first)


def _figures(pool: str, start: tuple[Any, ...], first: tuple[Any, ...]) -> dict[str, Any]:
    """Per-task figures between two samples: (time, tasks done, tree CPU, calls, usec, per command, CPU)."""
    done = first[1] - start[1]
    dt = first[0] - start[0]
    return {
        "pool": pool,
        "tasks": done,
        "rate": done / dt,
        "cpu_us": (first[2] - start[2]) / done * 1e6,
        "main_us": (first[6] - start[6]) / done * 1e6,
        "cmds": (first[3] - start[3]) / done,
        "redis_us": (first[4] - start[4]) / done,
        "window_s": dt,
        "per_command": {
            k: round((v - start[5].get(k, 0)) / done, 3)
            for k, v in first[5].items()
            if v != start[5].get(k, 0)
        },
    }


def _queue_celeriac(url: str, n: int, task: str, args: list[Any]) -> Any:
    os.environ["POOLBENCH_REDIS_URL"] = url
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import pools_tasks

    t = getattr(pools_tasks, task)
    for i in range(0, n, 20_000):
        pools_tasks.app.send_many([t.s(*args) for _ in range(min(20_000, n - i))])
    return pools_tasks


def _drained(r: redis.Redis, celery: bool, timeout_s: float = 120) -> None:
    """Wait until celeriac's queue is drained (consumer group) or Celery's (list and unacked hash)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if celery:
            if not r.exists("celery") and not r.hlen("unacked"):
                return
            time.sleep(0.05)
            continue
        streams = [k.decode() for k in r.scan_iter(match="*default*:ready")]
        if streams and all(progress(r, st)[1] == 0 and r.xlen(st) == 0 for st in streams):
            return
        time.sleep(0.05)
    state = {k.decode(): (progress(r, k), r.xlen(k)) for k in r.scan_iter(match="*:ready")}
    raise RuntimeError(f"the warm-up tasks were not drained in time: {state}")


def hostage(url: str, pool: str, longs_s: float = 3.0, shorts: int = 200) -> dict[str, Any]:
    """Does a long task hold short ones hostage? Two workers of ``pool``: A consumes ``long`` and the
    default queue, B the default queue only. Both drain 4,000 no-ops first (so A measured short tasks
    and prefetches), then A's every slot gets a ``longs_s`` task while ``shorts`` short tasks arrive on
    the default queue at once. Each short task records how long after its send it started: with no
    hostage, every one starts within milliseconds (on B, or on A before the long ones); a short task
    reserved by A behind its long ones waits about ``longs_s``."""
    r = redis.Redis.from_url(url)
    r.flushall()
    celery = pool.startswith("celery-")
    env = dict(
        os.environ,
        POOLBENCH_REDIS_URL=url,
        PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    slots = int((CELERY_POOLS if celery else POOLS)[pool][-1])
    if celery:
        py = celery_python()
        base = [
            str(py.parent / "celery"),
            "-A",
            "pools_celery",
            "worker",
            "-l",
            "warning",
            *CELERY_POOLS[pool],
        ]
        argvs = [[*base, "-Q", "long,celery", "-n", "a@%h"], [*base, "-Q", "celery", "-n", "b@%h"]]
    else:
        base = [
            str(ROOT / ".venv/bin/celeriac"),
            "-A",
            "pools_tasks:app",
            "worker",
            "-l",
            "warning",
            *POOLS[pool],
        ]
        argvs = [[*base, "-Q", "long,default"], [*base, "-Q", "default"]]
    logs = os.environ.get("POOLBENCH_LOGS")  # a directory: the workers' output goes there
    procs = [
        subprocess.Popen(
            a,
            env=env,
            cwd=HERE,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(f"{logs}/hostage-{pool}-{i}.log", "w") if logs else None,  # noqa: SIM115
        )
        for i, a in enumerate(argvs)
    ]
    try:
        if celery:
            subprocess.run(
                [str(py), str(HERE / "pools_celery.py"), "send", "4000", "noop", "1", "2"],
                env=env,
                check=True,
            )
        else:
            _queue_celeriac(url, 4000, "noop", [1, 2])
        _drained(r, celery)
        if celery:
            cmd = [str(py), str(HERE / "pools_celery.py"), "hostage", str(slots), str(longs_s), str(shorts)]
            subprocess.run(cmd, env=env, check=True)
        else:
            tasks = _queue_celeriac(url, 0, "noop", [])
            for _ in range(slots):
                tasks.long.apply_async((longs_s,), queue="long")
            tasks.app.send_many([tasks.stamp.s(time.time()) for _ in range(shorts)])
        end = time.monotonic() + 60
        while r.llen("poolbench:starts") < shorts and time.monotonic() < end:
            time.sleep(0.05)
        waits = sorted(float(x.split()[0]) for x in r.lrange("poolbench:starts", 0, -1))
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if len(waits) < shorts:
        raise RuntimeError(f"{pool}: only {len(waits)} of {shorts} short tasks started within a minute")
    return {
        "pool": pool,
        "p50_ms": waits[len(waits) // 2] * 1000,
        "max_ms": waits[-1] * 1000,
        "late": sum(w > longs_s / 2 for w in waits),
        "shorts": shorts,
        "long_s": longs_s,
    }


def _fetches(m: dict[str, Any]) -> float:
    """Fetches per task: celeriac's ``XREADGROUP`` calls, Celery's ``BRPOP`` / ``LPOP``."""
    per = m.get("per_command", {})
    return sum(per.get(f"cmdstat_{c}", 0.0) for c in ("xreadgroup", "brpop", "lpop"))


def child_gaps_us(directory: str) -> tuple[float, float]:
    """The median and 90th percentile of the children's times between tasks (``pools_bodies.cpu``
    records them under ``POOLBENCH_GAPS``), in µs; NaN when none were recorded."""
    gaps = sorted(
        float(x) for name in os.listdir(directory) for x in Path(directory, name).read_text().split()
    )
    if not gaps:
        return float("nan"), float("nan")
    return gaps[len(gaps) // 2] * 1e6, gaps[int(0.9 * (len(gaps) - 1))] * 1e6


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def line(m: dict[str, Any]) -> str:
    return (
        f"{m['pool']:15} {m['rate']:9.0f}/s  worker CPU {m['cpu_us']:7.1f} us/task (main process "
        f"{m['main_us']:6.1f})  Redis {m['cmds']:5.3f} cmd/task {m['redis_us']:6.2f} us/task"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000, help="tasks per measurement")
    ap.add_argument("--pools", default=",".join([*POOLS, "celery-prefork", "celery-gevent"]))
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median shown)")
    ap.add_argument(
        "--cpu", action="store_true", help="only: 5 ms CPU tasks, processes -c 2 and Celery prefork -c 2"
    )
    ap.add_argument(
        "--hostage", action="store_true", help="only: the hostage measurement (threads, processes, Celery)"
    )
    ap.add_argument("--commands", action="store_true", help="also print Redis commands/task by command")
    a = ap.parse_args()
    print(
        f"{' '.join(sys.argv)}  ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {load()})", flush=True
    )
    rows: dict[str, list[dict[str, Any]]] = {}
    with RedisServer() as server:
        for _ in range(a.rounds):
            if a.hostage:
                for pool in ("threads", "processes", "celery-prefork"):
                    h = hostage(server.url, pool)
                    print(
                        f"{pool:15} short tasks behind {h['long_s']:g} s ones: start p50 {h['p50_ms']:.1f} ms, "
                        f"max {h['max_ms']:.1f} ms; {h['late']} of {h['shorts']} waited > {h['long_s'] / 2:g} s",
                        flush=True,
                    )
                continue
            if a.cpu:
                for pool in ("processes", "celery-prefork"):
                    n = min(a.n, 2_000)
                    with tempfile.TemporaryDirectory() as gaps_dir:
                        os.environ["POOLBENCH_GAPS"] = gaps_dir  # the children record their waits
                        try:
                            if pool.startswith("celery-"):
                                m = measure_celery(server.url, pool, n, "cpu", [5.0])
                            else:
                                m = measure(server.url, pool, n, "cpu", [5.0], [])
                        finally:
                            del os.environ["POOLBENCH_GAPS"]
                        gaps = child_gaps_us(gaps_dir)
                    m["cores"] = m["rate"] * 0.005
                    rows.setdefault(f"{pool}-cpu", []).append(m)
                    print(
                        f"{pool:15} -c 2, 5 ms CPU tasks: {m['rate']:.0f}/s = {m['cores']:.2f} cores of task work "
                        f"({m['cores'] / 2:.0%} of two); the worker's main process {m['main_us']:.0f} us/task "
                        f"(its overhead; with a busy machine, the cores go to other processes too); Redis "
                        f"{m['cmds']:.2f} commands/task, {_fetches(m):.2f} fetches/task; a child's time between "
                        f"tasks p50 {gaps[0]:.0f} us, p90 {gaps[1]:.0f} us",
                        flush=True,
                    )
                continue
            for pool in a.pools.split(","):
                if pool.startswith("celery-"):
                    m = measure_celery(server.url, pool, a.n, "noop", [1, 2])
                else:
                    m = measure(server.url, pool, a.n, "noop", [1, 2], [])
                rows.setdefault(pool, []).append(m)
                print(line(m), flush=True)
                if a.commands:
                    print(f"{'':15} {m['per_command']}", flush=True)
    if a.rounds > 1 and not a.hostage:
        print("\nmedians:")
        for pool, ms in rows.items():
            med = {
                k: sorted(m[k] for m in ms)[len(ms) // 2]
                for k in ("rate", "cpu_us", "main_us", "cmds", "redis_us")
            }
            print(line({"pool": pool, **med}))
    print(f"({load()})")


if __name__ == "__main__":
    main()
