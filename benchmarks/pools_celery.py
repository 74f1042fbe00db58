"""Celery's side of ``benchmarks/pools.py``: the same no-op and CPU-bound tasks, Celery's defaults.

Runs in ``.peers-venv/celery-pools`` (Celery 5.7 with gevent). ``python pools_celery.py send N task
arg...`` queues N tasks (one producer connection); the worker is ``celery -A pools_celery worker``.
"""

from __future__ import annotations

import os
import sys
import time

import pools_bodies
from celery import Celery

app = Celery("poolbench", broker=os.environ["POOLBENCH_REDIS_URL"])
app.conf.update(
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,  # Celery's default
)


for _body in (pools_bodies.noop, pools_bodies.cpu, pools_bodies.long, pools_bodies.stamp):
    app.task(name=f"pools.{_body.__name__}")(_body)
noop, cpu, long, stamp = (app.tasks[f"pools.{n}"] for n in ("noop", "cpu", "long", "stamp"))


def send(n: int, task: str, args: list[float]) -> None:
    t = {"noop": noop, "cpu": cpu}[task]
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            t.apply_async(args, producer=producer)


def hostage(longs: int, long_s: float, shorts: int) -> None:
    """Queue ``longs`` long tasks on queue ``long`` and ``shorts`` stamped short ones on ``celery``."""
    with app.producer_or_acquire() as producer:
        for _ in range(longs):
            long.apply_async([long_s], queue="long", producer=producer)
        for _ in range(shorts):
            stamp.apply_async([time.time()], producer=producer)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(int(sys.argv[2]), sys.argv[3], [float(a) for a in sys.argv[4:]])
    elif sys.argv[1] == "hostage":
        hostage(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
