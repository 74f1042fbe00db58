"""Where celeriac's worker spends its time while draining no-op tasks.

    .venv/bin/python benchmarks/profile_worker.py                 # py-spy (sampling, low overhead)
    .venv/bin/python benchmarks/profile_worker.py --tool cprofile # deterministic, inflates call-heavy code
    .venv/bin/python benchmarks/profile_worker.py -n 200000 --task add_sync

Starts a private redis-server, queues N ``add(1, 2)`` with ``app.send_many``, then runs the same worker
the benchmark uses (one process, asyncio pool, concurrency 100) in burst mode under the profiler, and
prints the hottest functions by self time, the hottest celeriac functions by inclusive time, and the
share of time per package. py-spy comes from ``.peers-venv/tools`` (run.py creates it).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ADAPTERS = HERE / "adapters"
PYSPY = HERE / ".peers-venv" / "tools" / "bin" / "py-spy"

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")


def package_of(path: str) -> str:
    path = "/" + path.lstrip("/")
    if path.startswith("/<string>"):
        return "generated (dataclass __init__ etc.)"
    for marker, name in (
        ("/celeriac/", "celeriac"),
        ("/redis/", "redis-py"),
        ("/hiredis", "hiredis"),
        ("/msgpack/", "msgpack"),
        ("/asyncio/", "asyncio"),
        ("/selectors.py", "asyncio"),
        ("/concurrent/", "thread pool"),
        ("/uuid.py", "uuid"),
        ("/adapters/", "benchmark task"),
    ):
        if marker in path:
            return name
    return "other"


def short(path: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/", "/adapters/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def report_pyspy(raw: Path, top: int) -> None:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    pkg: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        # the first frame names the process/thread; keep frames that look like "func (file)"
        parsed = [m.groupdict() for f in frames if (m := _FRAME.match(f))]
        if not parsed:
            continue
        total += n
        leaf = parsed[-1]
        self_t[f"{short(leaf['file'])}:{leaf['func']}"] += n
        pkg[package_of(leaf["file"])] += n
        for key in {f"{short(p['file'])}:{p['func']}" for p in parsed}:
            incl[key] += n
    if not total:
        print("py-spy recorded no samples")
        return
    print(f"\n{total} samples (py-spy, wall-clock of the worker's threads, idle included)\n")
    print("self time by package:")
    for name, n in pkg.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
    print(f"\ntop {top} functions by self time:")
    for key, n in self_t.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {key}")
    print(f"\ntop {top} celeriac functions by inclusive time:")
    shown = 0
    for key, n in incl.most_common():
        if key.startswith("celeriac/"):
            print(f"  {100 * n / total:5.1f}%  {key}")
            shown += 1
            if shown >= top:
                break


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200_000, help="tasks to queue and drain (default 200,000)")
    ap.add_argument("--tool", choices=["pyspy", "cprofile"], default="pyspy")
    ap.add_argument("--task", choices=["add", "add_sync"], default="add", help="async def (default) or def")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--celeriac-ref", metavar="REF", help="profile celeriac as committed at REF (e.g. HEAD)")
    args = ap.parse_args()

    export = tempfile.TemporaryDirectory(prefix="celeriac-profile-")
    src_path = ""
    if args.celeriac_ref:
        sha = subprocess.run(
            ["git", "-C", str(HERE.parent), "rev-parse", "--verify", f"{args.celeriac_ref}^{{commit}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        archive = subprocess.run(
            ["git", "-C", str(HERE.parent), "archive", sha, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", export.name], input=archive, check=True)
        src_path = os.path.join(export.name, "src")
        sys.path.insert(0, src_path)  # ahead of the editable install
        print(f"celeriac from commit {sha[:10]}")

    from celeriac.testing.server import RedisServer

    with RedisServer() as server:
        os.environ["BENCH_REDIS_URL"] = server.url
        sys.path.insert(0, str(ADAPTERS))
        import bench_celeriac as bench  # configured from BENCH_REDIS_URL

        task = bench.TASKS[args.task]
        for i in range(0, args.n, 50_000):
            bench.app.send_many([task.s(1, 2) for _ in range(min(50_000, args.n - i))])
        print(f"queued {args.n:,} {args.task}(1, 2) on {server.url}")

        if args.tool == "cprofile":
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.runcall(bench.run_worker, "burst")
            dt = time.perf_counter() - t0
            print(
                f"drained in {dt:.2f} s under cProfile ({args.n / dt:,.0f} tasks/s, profiler overhead included)"
            )
            stats = pstats.Stats(prof)
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(r"celeriac", args.top)
            return 0

        if not PYSPY.exists():
            print(f"py-spy not found at {PYSPY}: run benchmarks/run.py once, or use --tool cprofile")
            return 1
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "pyspy.txt"
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ADAPTERS), src_path) if p))
            cmd = [
                str(PYSPY),
                "record",
                "--format",
                "raw",
                "--nolineno",
                "--threads",
                "--rate",
                str(args.rate),
            ]
            cmd += ["-o", str(raw), "--", sys.executable, "-m", "harness", "worker", "celeriac", "burst"]
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=ADAPTERS, check=True, stdout=subprocess.DEVNULL)
            dt = time.perf_counter() - t0
            print(f"drained in {dt:.2f} s including start-up ({args.n / dt:,.0f} tasks/s under py-spy)")
            report_pyspy(raw, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
