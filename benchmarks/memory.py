"""Resident memory of celeriac workers: one command, one table.

    python benchmarks/memory.py                 # every configuration (gevent ones if installed)
    python benchmarks/memory.py --only asyncio,processes --settle 3 --embedded

For each configuration it starts ``python -m celeriac.cli worker -A memapp:app ... -l warning`` (the CLI,
as in production) against a private ``redis-server``, waits until the worker's heartbeat says it is
ready, lets it idle ``--settle`` seconds, and sums VmRSS (``/proc/<pid>/status``) and Pss
(``/proc/<pid>/smaps_rollup``) over the worker and its descendants. ``memapp`` has one task.

Per-slot cost: a worker with ``-c 910`` runs tasks that wait (``await asyncio.sleep`` for asyncio,
``time.sleep`` for gevent); the worker's RSS is read with ``LOW`` and then ``HIGH`` tasks running
(its heartbeat counts them), and the cost of one busy slot is the difference divided by
``HIGH - LOW``: what a running task costs, fixed costs excluded.

``--embedded`` also measures an idle asyncio worker started from Python (``Worker(app).start()``),
without the CLI.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from celeriac.testing import descendant_pids  # noqa: E402
from celeriac.testing.server import RedisServer  # noqa: E402

APP = """\
from celeriac import Celeriac

app = Celeriac("memapp")


@app.task(name="memapp.noop")
def noop() -> None:
    return None
"""

# the tasks of the per-slot runs, imported with -I only there (the idle app keeps one task)
SLOTS = """\
import asyncio
import time

from memapp import app


@app.task(name="memslots.asleep")
async def asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@app.task(name="memslots.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)
"""

EMBEDDED = """\
import logging, sys
from celeriac import Worker
from memapp import app
logging.basicConfig(level=logging.WARNING)
Worker(app, worker_id=sys.argv[1]).start()
"""

# two numbers of running tasks: the slope between them is the memory per running task
LOW, HIGH = 100, 900


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(pid: int) -> tuple[int, int, int]:
    """(summed VmRSS KiB, summed Pss KiB, processes) of ``pid`` and its descendants."""
    pids = [pid, *descendant_pids(pid)]
    return sum(rss_kib(p) for p in pids), sum(pss_kib(p) for p in pids), len(pids)


class Bench:
    def __init__(self, url: str, workdir: str, settle_s: float) -> None:
        self.url = url
        self.workdir = workdir
        self.settle_s = settle_s
        self.r = redis.Redis.from_url(url)
        # the celeriac under test: $PYTHONPATH when set (to compare two trees), else this repository's
        path = os.pathsep.join((workdir, os.environ.get("PYTHONPATH") or str(REPO / "src")))
        self.env = {
            **os.environ,
            "PYTHONPATH": path,
            "CELERIAC_BROKER_URL": url,
            "CELERIAC_WORKER_TTL_S": "3",  # heartbeat every second: the running count follows fast
        }
        self.n = 0

    def start(self, args: list[str], embedded: bool = False) -> tuple[subprocess.Popen[bytes], str]:
        self.n += 1
        worker_id = f"mem-{self.n}"
        queue = f"mem{self.n}"
        if embedded:
            cmd = [sys.executable, "-c", EMBEDDED, worker_id]
        else:
            cmd = [sys.executable, "-m", "celeriac.cli", "worker", "-A", "memapp:app", "-n", worker_id]
            cmd += ["-Q", queue, "-l", "warning", *args]
        proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env)
        self.wait_field(proc, worker_id, "pid", lambda v: v is not None)
        return proc, queue

    def field(self, worker_id: str, name: str) -> str | None:
        value = self.r.hget(f"celeriac:worker:{worker_id}", name)
        return value.decode() if value is not None else None

    def wait_field(self, proc: subprocess.Popen[bytes], worker_id: str, name: str, ok: object) -> None:
        deadline = time.monotonic() + 60
        while not ok(self.field(worker_id, name)):  # type: ignore[operator]
            if proc.poll() is not None:
                raise SystemExit(f"worker exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {worker_id}: {name} not reached in 60 s")
            time.sleep(0.05)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.kill()
        proc.wait()

    def idle(self, label: str, args: list[str], embedded: bool = False) -> None:
        proc, _ = self.start(args, embedded)
        time.sleep(self.settle_s)
        rss, pss, count = tree(proc.pid)
        self.stop(proc)
        print(f"| {label} | {count} | {rss / 1024:.1f} | {pss / 1024:.1f} |", flush=True)

    def per_slot(self, label: str, pool: str, task: str) -> None:
        app_path = Path(self.workdir, "memslots.py")
        proc, queue = self.start(["-P", pool, "-c", str(HIGH + 10), "-I", "memslots"])
        worker_id = f"mem-{self.n}"
        from celeriac import Celeriac
        from celeriac.task import Signature

        producer = Celeriac("memprod", broker=self.url)
        points = []
        sent = 0
        for target in (LOW, HIGH):
            producer.send_many(
                [
                    Signature(task, (600.0,), options={"queue": queue}, app=producer)
                    for _ in range(target - sent)
                ]
            )
            sent = target
            self.wait_field(proc, worker_id, "running", lambda v, t=target: v is not None and int(v) >= t)
            time.sleep(self.settle_s)
            points.append(rss_kib(proc.pid))
        self.stop(proc)
        producer.close()
        per_slot = (points[1] - points[0]) * 1024 / (HIGH - LOW)
        assert app_path.exists()
        print(
            f"| {label} | RSS {points[0] / 1024:.1f} MiB with {LOW} running, {points[1] / 1024:.1f} MiB "
            f"with {HIGH} | **{per_slot / 1000:.1f} KB** per running task |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", default="asyncio,threads,gevent,processes,slots", help="comma-separated subset"
    )
    parser.add_argument("--settle", type=float, default=3.0, help="seconds idle before reading (3)")
    parser.add_argument("--embedded", action="store_true", help="also an idle worker started from Python")
    options = parser.parse_args()
    only = set(options.only.split(","))
    try:
        import gevent  # noqa: F401
    except ImportError:
        print("gevent is not installed (pip install 'celeriac[gevent]'): skipping its figures")
        only.discard("gevent")
        gevent_slots = False
    else:
        gevent_slots = True
    print(f"Python {platform.python_version()}, {platform.system()} {platform.machine()}")
    with tempfile.TemporaryDirectory() as workdir, RedisServer() as server:
        Path(workdir, "memapp.py").write_text(APP)
        Path(workdir, "memslots.py").write_text(SLOTS)
        bench = Bench(server.url, workdir, options.settle)
        print("\n| idle worker | processes | VmRSS (MiB) | Pss (MiB) |\n|---|---|---|---|")
        if "asyncio" in only:
            bench.idle("`-P asyncio`", ["-P", "asyncio"])
        if "threads" in only:
            bench.idle("`-P threads`", ["-P", "threads"])
        if "gevent" in only:
            bench.idle("`-P gevent`", ["-P", "gevent"])
        if "processes" in only:
            bench.idle(
                "`-P processes -c 2` (worker + fork server + 2 children)", ["-P", "processes", "-c", "2"]
            )
        if options.embedded:
            bench.idle("asyncio, `Worker(app).start()` from Python", [], embedded=True)
        if "slots" in only:
            print("\n| per running task | figures | cost |\n|---|---|---|")
            bench.per_slot("`-P asyncio`, `async def` awaiting", "asyncio", "memslots.asleep")
            if gevent_slots:
                bench.per_slot("`-P gevent`, sync `time.sleep`", "gevent", "memslots.sleep")
    print(
        textwrap.dedent("""
        VmRSS counts pages shared between processes once per process; Pss divides them among the
        sharers (the process pool's children share the pages of their fork server).
    """).strip()
    )


if __name__ == "__main__":
    main()
