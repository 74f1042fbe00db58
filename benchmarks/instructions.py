"""Instructions the worker process executes per drained no-op task, counted by callgrind.

    .venv/bin/python benchmarks/instructions.py            # N = 5,000 (about 40 s), recording on
    .venv/bin/python benchmarks/instructions.py -n 10000
    .venv/bin/python benchmarks/instructions.py --events both   # recording (issue 13) off and on
    .venv/bin/python benchmarks/instructions.py --pool processes:2:tasks.add_sync   # another pool

Timings on a shared machine move with whatever else runs; instruction counts do not (the same binary,
inputs and environment give the same count within a few per cent). So this is the figure to compare
two versions of the engine's hot path by. It queues N and then 2N ``add(1, 2)`` (not counted: another
process sends them), drains each with one ``Worker(pool="asyncio", concurrency=100)`` in burst mode under
``valgrind --tool=callgrind``, and reports (I(2N) - I(N)) / N, which cancels start-up and shutdown.
Needs ``valgrind`` and ``redis-server`` on the PATH.

Recording (``monitor_events``, on by default) writes at most every 100 ms, so its cost per task
depends on how many outcomes a write carries: under valgrind (about 50 times slower) a write would
carry 50 times fewer than at full speed. The worker's write interval is therefore stretched by the
same factor (``--write-interval-s``, default 5 s), so that a write carries what it carries at full
speed, and the count matches a real drain's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parent
# CELERIAC_SRC: another checkout's src (git archive REF src | tar -x -C /tmp/ref) to compare with
sys.path.insert(0, os.environ.get("CELERIAC_SRC", str(HERE.parent / "src")))

from _callgrind import collected  # noqa: E402  (this script's folder is on sys.path)

from celeriac import Celeriac, Worker  # noqa: E402
from celeriac.testing import RedisServer  # noqa: E402


def make_app(url: str) -> Celeriac:
    app = Celeriac("bench", broker=url, result_backend="disabled")

    @app.task(name="tasks.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.add_sync")
    def add_sync(x: int, y: int) -> int:
        return x + y

    return app


def child(mode: str, url: str, n: int) -> None:
    app = make_app(url)
    pool, concurrency, task = os.environ.get("INSTRUCTIONS_POOL", "asyncio:100:tasks.add").split(":")
    if mode == "fill":
        add = app.tasks[task]
        for start in range(0, n, 10_000):
            app.send_many([add.s(1, 2) for _ in range(min(10_000, n - start))])
    else:
        try:  # see the module docstring
            import celeriac.monitor.recorder as recorder

            recorder._MIN_INTERVAL_S = float(os.environ.get("INSTRUCTIONS_WRITE_INTERVAL_S", "5"))
        except ImportError:  # a checkout from before recording (CELERIAC_SRC)
            pass
        # events=False only when asked: a checkout from before recording has no such argument
        off = {"events": False} if os.environ.get("INSTRUCTIONS_EVENTS", "on") == "off" else {}
        Worker(app, queues=["default"], concurrency=int(concurrency), pool=pool, burst=True, **off).start()


def instructions(url: str, n: int) -> int:
    subprocess.run([sys.executable, __file__, "--child", "fill", url, str(n)], check=True)
    return collected([sys.executable, __file__, "--child", "drain", url, str(n)])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=5_000, help="tasks in the smaller run (default 5,000)")
    parser.add_argument(
        "--pool",
        default="asyncio:100:tasks.add",
        help="pool:concurrency:task, e.g. processes:2:tasks.add_sync (the worker process only: a "
        "process pool's children are not counted)",
    )
    parser.add_argument(
        "--events", choices=["on", "off", "both"], default="on", help="recording task outcomes (default on)"
    )
    parser.add_argument(
        "--write-interval-s",
        type=float,
        default=5.0,
        help="the recorder's least interval between writes under valgrind (default 5: 100 ms x 50)",
    )
    parser.add_argument("--child", nargs=3, metavar=("MODE", "URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, url, n = args.child
        child(mode, url, int(n))
        return
    os.environ["INSTRUCTIONS_POOL"] = args.pool
    os.environ["INSTRUCTIONS_WRITE_INTERVAL_S"] = str(args.write_interval_s)
    per_task: dict[str, float] = {}
    with RedisServer() as server:
        for events in ("off", "on") if args.events == "both" else (args.events,):
            os.environ["INSTRUCTIONS_EVENTS"] = events
            counts = {}
            for n in (args.n, 2 * args.n):
                redis.Redis.from_url(server.url).flushall()
                counts[n] = instructions(server.url, n)
            per_task[events] = (counts[2 * args.n] - counts[args.n]) / args.n
            print(
                f"{args.pool}, recording {events}: instructions per drained task: {per_task[events]:,.0f}  "
                f"(I({args.n}) = {counts[args.n]:,}, I({2 * args.n}) = {counts[2 * args.n]:,})",
                flush=True,
            )
    if len(per_task) == 2:
        print(f"recording costs {per_task['on'] / per_task['off'] - 1:+.1%} instructions per task")


if __name__ == "__main__":
    main()
