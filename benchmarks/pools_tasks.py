"""The app of ``benchmarks/pools.py``: sync no-op and CPU-bound tasks, broker from the environment."""

from __future__ import annotations

import os
import time

from celeriac import Celeriac

app = Celeriac("poolbench", broker=os.environ["POOLBENCH_REDIS_URL"], result_backend="disabled")


@app.task(name="pools.noop")
def noop(x: int, y: int) -> int:
    return x + y


@app.task(name="pools.cpu")
def cpu(ms: float) -> int:
    """Burn ``ms`` milliseconds of this process's CPU time."""
    end = time.process_time() + ms / 1000
    n = 0
    while time.process_time() < end:
        n += 1
    return n
