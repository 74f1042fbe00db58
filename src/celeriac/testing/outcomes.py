"""Fill Redis with recorded task outcomes through the workers' own write path (``record.lua``), fast:
for tests and benchmarks of the dashboard at scale (hundreds of thousands to millions of outcomes)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from ..broker.base import Delivery
from ..execution import Outcome
from ..message import Message
from ..monitor.recorder import MonitorSettings, Recorder
from ..monitor.script import RECORD, is_cluster
from ..states import TaskState

_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/shop/tasks.py", line 42, in charge\n'
    "    raise PaymentDeclined(card)\n"
    "shop.errors.PaymentDeclined: card declined\n"
)


class _Failed(Exception):
    pass


def fill_outcomes(
    client: Any,
    n: int,
    *,
    prefix: str = "celeriac",
    queues: Sequence[str] = ("default",),
    names: Sequence[str] = ("tasks.add",),
    failed_every: int = 100,
    batch: int = 500,
    settings: MonitorSettings | None = None,
    worker_id: str = "bench-worker",
) -> list[str]:
    """Record ``n`` outcomes (every ``failed_every``-th one a failure with a traceback and arguments),
    spread round-robin over ``queues`` and ``names``, in batches of ``batch``; return some task ids
    (the first of each batch) to look up. ``client`` is a synchronous redis-py client."""
    rec = Recorder(client, prefix, worker_id, settings or MonitorSettings())
    client.script_load(RECORD.text)
    sample: list[str] = []
    now = time.time()
    done = 0
    pipe = client.pipeline(transaction=False)
    pending = 0
    while done < n:
        size = min(batch, n - done)
        queue = queues[(done // batch) % len(queues)]
        for i in range(size):
            k = done + i
            tid = str(uuid.uuid4())
            name = names[k % len(names)]
            d = Delivery(queue, f"{int(now * 1000) - 1000}-{k}", b"\x00message", 1)
            if failed_every and k % failed_every == failed_every - 1:
                exc = _Failed("card declined")
                o = Outcome("ack", tid, name, TaskState.FAILURE, exc=exc, runtime_s=0.012)
                m = Message(
                    id=tid, task=name, args=(k, "<script>alert(1)</script>"), kwargs={"password": "hunter2"}
                )
                rec.add(d, o, m, now - 0.012)
            else:
                o = Outcome("ack", tid, name, TaskState.SUCCESS, runtime_s=0.0005 + (k % 7) * 0.003)
                rec.add(d, o, None, now - 0.01)
            if i == 0:
                sample.append(tid)
        keys, args = rec._call_of(queue, rec.take_sealed())
        if is_cluster(client):  # a cluster pipeline refuses scripts
            RECORD(client, keys, args)
        else:
            pipe.evalsha(RECORD.sha, len(keys), *keys, *args)
            pending += 1
        done += size
        if pending >= 20:
            _run(client, pipe)
            pipe = client.pipeline(transaction=False)
            pending = 0
    if pending:
        _run(client, pipe)
    # as a worker's heartbeat does: readers list the queues workers consumed
    client.sadd(f"{prefix}:queues", *queues)
    client.expire(f"{prefix}:queues", 7 * 86_400)
    return sample


def _run(client: Any, pipe: Any) -> None:
    pipe.execute()
