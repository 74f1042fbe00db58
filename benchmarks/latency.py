"""celeriac latency bars of the core engine issue, measured on a private redis-server.

* idle pickup: an idle worker (blocked in its read) starts a freshly sent task; measured from just
  before ``delay()`` to the first line of the task (both clocks are this machine's), with a pause
  between sends so the worker is idle each time (bar: 1 ms);
* delayed lateness: how long after its due time a ``countdown`` task starts on an idle worker
  (bar: 50 ms);
* round trip: ``delay().get()`` with results on, back to back (bar: p50 1 ms, p99 5 ms).

    .venv/bin/python benchmarks/latency.py [--samples 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from celeriac import Celeriac
from celeriac.testing import RedisServer

TASKS = textwrap.dedent(
    """
    import time
    from celeriac import Celeriac

    app = Celeriac("lat")

    @app.task(name="lat.stamp", ignore_result=False)
    async def stamp():
        return time.time()
    """
)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--idle-gap-s", type=float, default=0.01, help="pause between sends (worker idles)")
    args = parser.parse_args()
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "lat_tasks.py").write_text(TASKS)
        env = {**os.environ, "CELERIAC_BROKER_URL": server.url, "PYTHONPATH": tmp}
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celeriac.cli",
                "worker",
                "-A",
                "lat_tasks:app",
                "-c",
                "100",
                "-l",
                "warning",
            ],
            env=env,
            cwd=tmp,
        )
        try:
            app = Celeriac("lat", broker=server.url)
            stamp = "lat.stamp"
            app.send_task(stamp, ignore_result=False).get(timeout=30)  # worker up, connections warm

            pickup = []
            for _ in range(args.samples):
                time.sleep(args.idle_gap_s)  # the worker goes back to its blocking read
                sent = time.time()
                started = app.send_task(stamp, ignore_result=False).get(timeout=10)
                pickup.append((started - sent) * 1000)

            late = []
            for _ in range(max(20, args.samples // 15)):
                sent = time.time()
                started = app.send_task(stamp, ignore_result=False, countdown=0.2).get(timeout=10)
                late.append((started - (sent + 0.2)) * 1000)

            trip = []
            for _ in range(args.samples):
                t0 = time.perf_counter()
                app.send_task(stamp, ignore_result=False).get(timeout=10)
                trip.append((time.perf_counter() - t0) * 1000)
            app.close()
        finally:
            worker.terminate()
            worker.wait(30)
    print(
        f"idle pickup (send -> task starts), {len(pickup)} samples: p50 {pct(pickup, 50):.3f} ms, "
        f"p99 {pct(pickup, 99):.3f} ms   (bar: 1 ms)"
    )
    print(
        f"delayed task start after due time, {len(late)} samples: median {statistics.median(late):.1f} ms, "
        f"max {max(late):.1f} ms   (bar: 50 ms)"
    )
    print(
        f"delay()+get() round trip, {len(trip)} samples: p50 {pct(trip, 50):.3f} ms, p99 {pct(trip, 99):.3f} ms"
        "   (bars: p50 1 ms, p99 5 ms)"
    )


if __name__ == "__main__":
    main()
