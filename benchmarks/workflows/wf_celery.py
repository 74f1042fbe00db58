"""Celery side of benchmarks/workflows.py (Redis broker and result backend, solo pool)."""

from __future__ import annotations

import sys
import time

import wf_common as common
from celery import Celery, chain, chord, group

app = Celery("wf_celery", broker=common.url(), backend=common.url())
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="wf.add")
def add(x, y):
    common.member_done()
    return x + y


@app.task(name="wf.body")
def body(values):
    common.body_started(len(values))
    return len(values)


@app.task(name="wf.hop")
def hop(x):
    common.hop()
    return x + 1


def send_group(n):
    t0 = time.perf_counter()
    group(add.s(i, i) for i in range(n)).delay()
    return time.perf_counter() - t0


def send_chord(n):
    chord((add.s(i, i) for i in range(n)), body.s()).delay()


def send_plain(n):
    for i in range(n):
        add.delay(i, i)


def send_chain(n):
    chain([hop.s(0)] + [hop.s() for _ in range(n - 1)]).delay()


def worker():
    app.worker_main(["worker", "--pool=solo", "-l", "WARNING", "--without-gossip", "--without-mingle"])


if __name__ == "__main__":
    common.main(sys.modules[__name__])
