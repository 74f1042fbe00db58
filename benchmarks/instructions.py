"""Instructions the worker process executes per drained no-op task, counted by callgrind.

    .venv/bin/python benchmarks/instructions.py            # N = 5,000 (about 40 s)
    .venv/bin/python benchmarks/instructions.py -n 10000

Timings on a shared machine move with whatever else runs; instruction counts do not (the same binary,
inputs and environment give the same count within a few per cent). So this is the figure to compare
two versions of the engine's hot path by. It queues N and then 2N ``add(1, 2)`` (not counted: another
process sends them), drains each with one ``Worker(pool="asyncio", concurrency=100)`` in burst mode under
``valgrind --tool=callgrind``, and reports (I(2N) - I(N)) / N, which cancels start-up and shutdown.
Needs ``valgrind`` and ``redis-server`` on the PATH.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from celeriac import Celeriac, Worker  # noqa: E402
from celeriac.testing import RedisServer  # noqa: E402


def make_app(url: str) -> Celeriac:
    app = Celeriac("bench", broker=url, result_backend="disabled")

    @app.task(name="tasks.add")
    async def add(x: int, y: int) -> int:
        return x + y

    return app


def child(mode: str, url: str, n: int) -> None:
    app = make_app(url)
    if mode == "fill":
        add = app.tasks["tasks.add"]
        for start in range(0, n, 10_000):
            app.send_many([add.s(1, 2) for _ in range(min(10_000, n - start))])
    else:
        Worker(app, queues=["default"], concurrency=100, pool="asyncio", burst=True).start()


def instructions(url: str, n: int, workdir: Path) -> int:
    subprocess.run([sys.executable, __file__, "--child", "fill", url, str(n)], check=True)
    out = workdir / f"callgrind.{n}.out"
    proc = subprocess.run(
        [
            *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"),
            *(sys.executable, __file__, "--child", "drain", url, str(n)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=5_000, help="tasks in the smaller run (default 5,000)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, url, n = args.child
        child(mode, url, int(n))
        return
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        counts = {}
        for n in (args.n, 2 * args.n):
            redis.Redis.from_url(server.url).flushall()
            counts[n] = instructions(server.url, n, Path(tmp))
        per_task = (counts[2 * args.n] - counts[args.n]) / args.n
        print(
            f"instructions per drained task: {per_task:,.0f}  (I({args.n}) = {counts[args.n]:,}, "
            f"I({2 * args.n}) = {counts[2 * args.n]:,})"
        )


if __name__ == "__main__":
    main()
