"""What recording costs Redis: the time ``record.lua`` runs per recorded task.

A worker's records reach Redis in one ``record.lua`` call per batch (up to 1,000 records), and Redis
runs nothing else meanwhile: this time is taken from every other client (the worker's own fetches and
acks included). The batches here are built by the worker's own code (``Recorder.note``, as the worker
notes a plain success, then ``Recorder.take_sealed`` and ``Recorder._call_of``) from successful no-op
outcomes, written to a private ``redis-server``, and timed
by Redis itself (``INFO commandstats``: microseconds inside ``EVALSHA``), so the figure depends on the
machine's speed but not on the client's.

    .venv/bin/python benchmarks/monitoring/record_cost.py                 # 60 batches of 600
    .venv/bin/python benchmarks/monitoring/record_cost.py --batch 1000 --batches 100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from celeriac.broker.base import Delivery
from celeriac.execution import Outcome
from celeriac.message import Message
from celeriac.monitor.recorder import MonitorSettings, Recorder
from celeriac.monitor.script import RECORD
from celeriac.states import TaskState
from celeriac.testing import RedisServer


def run(batch: int, batches: int) -> float:
    """Microseconds of ``record.lua`` per recorded task, over ``batches`` batches of ``batch``."""
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        client.script_load(RECORD.text)
        rec = Recorder(None, "celeriac", "bench", MonitorSettings())  # type: ignore[arg-type]
        for _ in range(batches):
            now = time.time()
            for i in range(batch):
                d = Delivery("default", f"{int(now * 1000)}-{i}", b"")
                tid = str(uuid.uuid4())
                o = Outcome("ack", tid, "tasks.add", TaskState.SUCCESS, runtime_s=0.00001)
                rec.note(d, o, Message(tid, "tasks.add"))
            keys, args = rec._call_of("default", rec.take_sealed())
            client.evalsha(RECORD.sha, len(keys), *keys, *args)
        usec = client.info("commandstats")["cmdstat_evalsha"]["usec"]
        client.close()
    return float(usec) / (batch * batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=600, help="records per record.lua call (default 600)")
    ap.add_argument("--batches", type=int, default=60, help="calls per round (default 60)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each on a fresh Redis (default 3)")
    args = ap.parse_args()
    per_task = [run(args.batch, args.batches) for _ in range(args.rounds)]
    print(
        f"record.lua: {statistics.median(per_task):.2f} us of Redis time per recorded task "
        f"(median of {args.rounds} rounds: {', '.join(f'{x:.2f}' for x in per_task)}; "
        f"{args.batches} calls of {args.batch} records each)"
    )


if __name__ == "__main__":
    main()
