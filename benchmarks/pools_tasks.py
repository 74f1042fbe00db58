"""The app of ``benchmarks/pools.py``: the tasks of ``pools_bodies``, broker from the environment."""

from __future__ import annotations

import os

import pools_bodies

from celeriac import Celeriac

app = Celeriac("poolbench", broker=os.environ["POOLBENCH_REDIS_URL"], result_backend="disabled")


for _body in (pools_bodies.noop, pools_bodies.cpu, pools_bodies.long, pools_bodies.stamp):
    app.task(name=f"pools.{_body.__name__}")(_body)
noop, cpu, long, stamp = (app.tasks[f"pools.{n}"] for n in ("noop", "cpu", "long", "stamp"))
