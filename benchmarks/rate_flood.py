"""A flood of rate-limited tasks on one worker: do they start in send order, and how long do they take?

N tasks under one global rate limit are sent at once (optionally with a task that blocks the worker's
loop for a while in the middle, as a stalled worker), then one worker in a thread starts them. Each
task records its number and start time in Redis. Printed: whether the starts kept the send order, the
number of inversions, the span of the starts against the ideal (N - 1 intervals), the hand-backs
(``deferred``) and the tasks sent round again in line (``late``), and Redis script calls per task.

    .venv/bin/python benchmarks/rate_flood.py [--tasks 2000] [--rate 500/s] [--stall 0.5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import redis

from celeriac import Celeriac
from celeriac.testing import RedisServer, ThreadWorker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rate", default="500/s")
    parser.add_argument("--stall", type=float, default=0.5, help="seconds the worker's loop is blocked")
    args = parser.parse_args()
    n = args.tasks
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        app = Celeriac("flood", broker=server.url)

        @app.task(name="flood.limited", rate_limit=args.rate)
        async def limited(i: int) -> None:
            r.rpush("order", f"{i} {time.time():.4f}")  # synchronous: in the order the worker starts them

        @app.task(name="flood.stall")
        async def stall() -> None:
            time.sleep(args.stall)  # noqa: ASYNC251 - blocks the loop on purpose

        head = [limited.s(i) for i in range(n // 7)]
        sigs = [*head, *([stall.s()] if args.stall else []), *(limited.s(i) for i in range(n // 7, n))]
        app.send_many(sigs)
        r.config_resetstat()
        w = ThreadWorker(app, concurrency=50).start()
        while r.llen("order") < n:
            time.sleep(0.05)
        w.stop(cold=True)
        rows = [x.decode().split() for x in r.lrange("order", 0, -1)]
        order = [int(i) for i, _ in rows]
        starts = sorted(float(t) for _, t in rows)
        per_s = float(args.rate.split("/")[0]) / {"s": 1, "m": 60, "h": 3600}[args.rate.split("/")[1]]
        scripts = int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
        assert w.worker.flow is not None
        print(
            f"{n} tasks at {args.rate}, stall {args.stall} s, load {os.getloadavg()[0]:.1f}: "
            f"in send order {order == list(range(n))} "
            f"({sum(1 for a, b in itertools.pairwise(order) if b < a)} inversions); "
            f"starts span {starts[-1] - starts[0]:.2f} s (ideal {(n - 1) / per_s:.2f} s); "
            f"hand-backs {w.worker.flow.deferred}, sent round again {w.worker.flow.late}; "
            f"{scripts / n:.1f} script calls per task"
        )
        app.close()


if __name__ == "__main__":
    main()
