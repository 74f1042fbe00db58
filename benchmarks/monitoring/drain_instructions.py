"""What recording costs a worker, counted in instructions (valgrind/callgrind): a figure that machine
load does not move, unlike a drain rate on a shared machine.

A worker process (asyncio pool, concurrency 100, results off) drains N queued no-op tasks under
``valgrind --tool=callgrind``, with recording off and on, at two sizes; the slope between the sizes
is the instructions per task (start-up and shutdown cancel out). The worker is CPU-bound when
draining, so the drain rate falls by about 1 - off/on.

    .venv/bin/python benchmarks/monitoring/drain_instructions.py            # 2,000 and 6,000 tasks (~10 min)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for _callgrind

from _callgrind import collected

WORKER = r"""
import sys
from celeriac import Celeriac, Worker
app = Celeriac("bench", broker=sys.argv[1], result_backend="disabled")
@app.task(name="tasks.add")
async def add(x, y):
    return x + y
Worker(app, queues=["default"], concurrency=100, pool="asyncio", burst=True, events=sys.argv[2] == "on").start()
"""


def instructions(url: str, mode: str) -> int:
    return collected([sys.executable, "-c", WORKER, url, mode])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--large", type=int, default=6000)
    args = ap.parse_args()
    from celeriac import Celeriac
    from celeriac.testing import RedisServer

    with RedisServer() as srv:
        app = Celeriac("bench", broker=srv.url, result_backend="disabled")

        @app.task(name="tasks.add")
        async def add(x: int, y: int) -> int:
            return x + y

        counts: dict[str, dict[int, int]] = {"off": {}, "on": {}}
        for n in (args.small, args.large):
            for mode in ("off", "on"):
                app.broker.sync.flushall()
                app.send_many([add.s(1, 2) for _ in range(n)])
                counts[mode][n] = instructions(srv.url, mode)
                print(f"{n:,} tasks, recording {mode}: {counts[mode][n]:,} instructions", flush=True)
        span = args.large - args.small
        per = {m: (c[args.large] - c[args.small]) / span for m, c in counts.items()}
        print(
            json.dumps(
                {
                    "instructions_per_task_off": round(per["off"]),
                    "instructions_per_task_on": round(per["on"]),
                    "extra_percent": round(100 * (per["on"] / per["off"] - 1), 1),
                    "drain_rate_drop_percent": round(100 * (1 - per["off"] / per["on"]), 1),
                    "date": time.strftime("%Y-%m-%d %H:%M"),
                }
            )
        )


if __name__ == "__main__":
    main()
