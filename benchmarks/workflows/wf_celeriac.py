"""celeriac side of benchmarks/workflows.py: the app, its tasks and each phase (see there)."""

from __future__ import annotations

import os
import sys

if os.environ.get("BENCH_POOL") == "gevent" and sys.argv[1:2] == ["worker"]:
    from gevent import monkey  # the gevent pool: patched before anything else is imported

    monkey.patch_all()

import time

import wf_common as common

from celeriac import Celeriac, Worker, chain, chord, group

app = Celeriac("wfbench", broker=common.url())


@app.task(name="wf.add")
def add(x: int, y: int) -> int:
    common.member_done()
    return x + y


@app.task(name="wf.body")
def body(values: list[int]) -> int:
    common.body_started(len(values))
    return len(values)


@app.task(name="wf.hop")
def hop(x: int) -> int:
    common.hop()
    return x + 1


@app.task(name="wf.ahop")
async def ahop(x: int) -> int:
    """The chain step as a coroutine: on the asyncio pool it runs on the worker's loop."""
    common.hop()
    return x + 1


def send_group(n: int) -> float:
    t0 = time.perf_counter()
    group(add.s(i, i) for i in range(n)).delay()
    return time.perf_counter() - t0


def send_chord(n: int) -> None:
    chord((add.s(i, i) for i in range(n)), body.s()).delay()


def send_plain(n: int) -> None:
    app.send_many([add.s(i, i) for i in range(n)])


def send_chain(n: int) -> None:
    step = ahop if os.environ.get("BENCH_ASYNC_STEP") else hop
    chain([step.s(0)] + [step.s() for _ in range(n - 1)]).delay()


def worker() -> None:
    pool = os.environ.get("BENCH_POOL") or "threads"
    concurrency = 1 if pool == "processes" else 100  # processes: one child sees every step
    Worker(app, queues=["default"], concurrency=concurrency, pool=pool).start()


if __name__ == "__main__":
    common.main(sys.modules[__name__])
