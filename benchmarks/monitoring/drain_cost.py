"""What recording task outcomes costs the worker: drain rate with recording on and off.

One private Redis; each round queues N no-op ``async def add`` tasks (bulk send), then a fresh worker
process (asyncio pool, concurrency 100, as benchmarks/run.py's drain) runs them with ``events`` on or
off; the rate is timed inside the worker, from its first task to its last. Rounds alternate on/off so
that machine noise hits both alike; the medians are compared. The worker's CPU time per task (inside
the same window) is printed too: on a shared, loaded machine it moves less than the rate. So is the
median of the rounds' own costs (``pair_cost_percent``: each round's on and off ran seconds apart),
with its quartiles: a machine whose speed drifts over minutes moves it less than the two medians.

    .venv/bin/python benchmarks/monitoring/drain_cost.py              # 20k tasks, 7 rounds each
    .venv/bin/python benchmarks/monitoring/drain_cost.py --tasks 50000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKER = r"""
import inspect, json, os, sys, time
from celeriac import Celeriac, Worker
N = int(sys.argv[2]); events = sys.argv[3] == "on"
app = Celeriac("bench", broker=sys.argv[1], result_backend="disabled")
marks = {}
count = 0
@app.task(name="tasks.add")
async def add(x, y):
    global count
    count += 1
    if count == 1:
        marks["first"] = time.perf_counter(); marks["cpu0"] = time.process_time()
    if count == N:
        marks["last"] = time.perf_counter(); marks["cpu1"] = time.process_time()
    return x + y
# a tree from before the monitor (c5549ea) has no `events`: both modes then measure that code alone
switch = {"events": events} if "events" in inspect.signature(Worker).parameters else {}
Worker(app, queues=["default"], concurrency=100, pool="asyncio", burst=True, **switch).start()
print(json.dumps({"rate": (N - 1) / (marks["last"] - marks["first"]), "n": count,
                  "cpu_us": (marks["cpu1"] - marks["cpu0"]) / (N - 1) * 1e6}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    from celeriac import Celeriac
    from celeriac.testing import RedisServer

    with RedisServer() as srv:
        app = Celeriac("bench", broker=srv.url, result_backend="disabled")

        @app.task(name="tasks.add")
        async def add(x: int, y: int) -> int:
            return x + y

        rates: dict[str, list[float]] = {"on": [], "off": []}
        cpu: dict[str, list[float]] = {"on": [], "off": []}
        for r in range(args.rounds):
            for mode in ("off", "on") if r % 2 else ("on", "off"):
                app.broker.sync.flushall()
                app.send_many([add.s(1, 2) for _ in range(args.tasks)])
                out = subprocess.run(
                    [sys.executable, "-c", WORKER, srv.url, str(args.tasks), mode],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "PYTHONWARNINGS": "ignore"},
                )
                got = json.loads(out.stdout.strip().splitlines()[-1])
                rates[mode].append(got["rate"])
                cpu[mode].append(got["cpu_us"])
                print(
                    f"round {r + 1} {mode:>3}: {got['rate']:,.0f} tasks/s, worker CPU {got['cpu_us']:.1f} us/task",
                    flush=True,
                )
        on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
        # each round's own on/off pair ran seconds apart: the median of the pairs' costs cancels the
        # drift of a shared machine's speed over minutes better than the two medians do
        pairs = sorted(100 * (1 - a / b) for a, b in zip(rates["on"], rates["off"]))
        print(
            json.dumps(
                {
                    "tasks": args.tasks,
                    "rounds": args.rounds,
                    "median_on": round(on),
                    "median_off": round(off),
                    "cost_percent": round(100 * (1 - on / off), 1),
                    "pair_cost_percent": round(statistics.median(pairs), 1),
                    "pair_cost_quartiles": [round(q, 1) for q in statistics.quantiles(pairs, n=4)]
                    if len(pairs) > 1
                    else [],
                    "worker_cpu_us_per_task_on": round(statistics.median(cpu["on"]), 2),
                    "worker_cpu_us_per_task_off": round(statistics.median(cpu["off"]), 2),
                    "on": [round(x) for x in rates["on"]],
                    "off": [round(x) for x in rates["off"]],
                    "date": time.strftime("%Y-%m-%d %H:%M"),
                }
            )
        )


if __name__ == "__main__":
    main()
