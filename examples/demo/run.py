"""The celeriac demo: a worker on Redis processes a burst of example tasks, then a summary is printed.

Run it with ``scripts/demo`` (which sets everything up), or ``python examples/demo/run.py``.

Unless ``CELERIAC_BROKER_URL`` is set, the demo starts a private ``redis-server`` on a free loopback
port (never the one on 6379) and removes it at the end. The worker runs as a separate process started
through the CLI, exactly as in production::

    celeriac worker -A tasks:app -Q demo,demo.io -c 50 -P asyncio
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

HERE = Path(__file__).resolve().parent
QUEUES = "demo,demo.io"
console = Console(highlight=False)


@dataclass
class Row:
    """One line of the summary table."""

    scenario: str
    tasks: int
    outcome: str
    seconds: float
    ok: bool


@contextlib.contextmanager
def broker_url() -> Iterator[str]:
    """``CELERIAC_BROKER_URL`` when set, else a private redis-server for the demo's duration."""
    given = os.environ.get("CELERIAC_BROKER_URL")
    if given:
        from celeriac._redis.client import redact

        console.print(f"broker: {redact(given)} (from CELERIAC_BROKER_URL)")
        yield given
        return
    from celeriac.testing import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        console.print("[red]redis-server is not installed[/]: run scripts/demo, or set CELERIAC_BROKER_URL")
        raise SystemExit(1)
    with RedisServer() as server:
        console.print(f"broker: private redis-server at {server.url}")
        yield server.url


@contextlib.contextmanager
def worker_process(app: Any, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``celeriac worker`` in a child process; stopped with SIGTERM (a warm shutdown) at the end."""
    worker_id = f"demo-{os.getpid()}"
    command = [
        sys.executable, "-m", "celeriac.cli", "worker",
        "-A", "tasks:app", "-Q", QUEUES, "-c", "50", "-P", "asyncio", "-n", worker_id,
    ]  # fmt: skip
    console.print(f"worker: celeriac {' '.join(command[3:])}", markup=False)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=HERE, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not any(w.worker_id == worker_id for w in app.broker.workers()):
            if proc.poll() is not None or time.monotonic() > deadline:
                console.print("[red]the worker did not start[/]; its log:")
                console.print(log_path.read_text(errors="replace"), markup=False)
                raise SystemExit(1)
            time.sleep(0.02)  # the worker announces itself in Redis; nothing to block on here
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def run_scenarios(app: Any, tasks: Any, n_small: int) -> list[Row]:
    rows: list[Row] = []

    # 1. a delayed task: it waits in Redis (not in the worker) and is promoted when due
    countdown = 2.0
    due = time.time() + countdown
    delayed = tasks.stamp.apply_async(("reminder",), countdown=countdown)
    delayed_sent = time.perf_counter()
    console.print(f"sent a delayed task (countdown={countdown:g}s); it waits server-side meanwhile")

    # 2. a result fetched with .get(): the caller blocks on Redis, no polling
    value, seconds = timed(lambda: tasks.add.delay(2, 3).get(timeout=10))
    rows.append(Row("add(2, 3).get()", 1, f"returned {value}", seconds, value == 5))

    # 3. a task that fails twice, then succeeds: retries with exponential backoff (0.25 s, 0.5 s)
    value, seconds = timed(lambda: tasks.flaky.delay("inventory").get(timeout=20))
    ok = isinstance(value, dict) and value.get("attempts") == 3
    rows.append(Row("flaky(): fails twice", 1, f"ok on attempt {value['attempts']} (backoff)", seconds, ok))

    # 4. async tasks: 20 coroutines of 0.3 s run concurrently on the worker's event loop
    def pages() -> list[str]:
        sent = [tasks.fetch_page.delay(i) for i in range(20)]
        return [r.get(timeout=10) for r in sent]

    value, seconds = timed(pages)
    ok = value == [f"page-{i}" for i in range(20)]
    rows.append(Row("async fetch_page() x20", 20, f"{len(value)} x 0.3 s, concurrently", seconds, ok))

    # 5. an error travels back: get() re-raises the task's own exception type
    start = time.perf_counter()
    try:
        tasks.parse.delay("forty-two").get(timeout=10)
        outcome, ok = "no error?", False
    except ValueError as exc:
        outcome, ok = "ValueError raised here", True
        console.print(f"parse('forty-two').get() raised {type(exc).__name__}: {exc}", markup=False)
    rows.append(Row("parse('forty-two')", 1, outcome, time.perf_counter() - start, ok))

    # 6. many small tasks: one pipelined bulk send, results collected under a progress bar
    start = time.perf_counter()
    results = app.send_many([tasks.square.s(i) for i in range(n_small)])
    sent_s = time.perf_counter() - start
    total = 0
    with Progress(
        TextColumn("squares"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        bar = progress.add_task("squares", total=n_small)
        for r in results:
            total += r.get(timeout=30)
            progress.advance(bar)
    seconds = time.perf_counter() - start
    ok = total == sum(i * i for i in range(n_small))
    console.print(
        f"send_many: {n_small:,} tasks sent in {sent_s * 1000:.0f} ms; "
        f"all {n_small:,} results back after {seconds * 1000:.0f} ms",
        markup=False,
    )
    rows.append(Row(f"square() x{n_small:,}", n_small, f"{n_small / seconds:,.0f} tasks/s", seconds, ok))

    # 7. the delayed task's result: how late after its due time did it run?
    ran_at = delayed.get(timeout=countdown + 10)
    late_ms = (ran_at - due) * 1000
    rows.append(
        Row(
            f"stamp(), countdown={countdown:g}s",
            1,
            f"ran {late_ms:+.0f} ms after due",
            time.perf_counter() - delayed_sent,
            -50 < late_ms < 1000,
        )
    )
    return rows


def summary(rows: list[Row], total_s: float) -> Table:
    table = Table(title=f"celeriac demo: {sum(r.tasks for r in rows):,} tasks in {total_s:.1f} s")
    table.add_column("scenario", no_wrap=True)
    table.add_column("tasks", justify="right")
    table.add_column("outcome")
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for r in rows:
        mark = "[green]ok[/]" if r.ok else "[red]FAILED[/]"
        table.add_row(r.scenario, f"{r.tasks:,}", r.outcome, f"{r.seconds * 1000:,.0f} ms", mark)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=5000, help="how many small tasks to send (default 5000)")
    options = parser.parse_args()
    started = time.perf_counter()
    console.rule("celeriac demo")
    with broker_url() as url, tempfile.TemporaryDirectory(prefix="celeriac-demo-") as tmp:
        os.environ["CELERIAC_BROKER_URL"] = url  # read by tasks.py (and the worker process) at import
        sys.path.insert(0, str(HERE))
        import tasks

        app = tasks.app
        try:
            with worker_process(app, Path(tmp) / "worker.log") as worker:
                rows = run_scenarios(app, tasks, options.tasks)
                console.print()
                subprocess.run(
                    [sys.executable, "-m", "celeriac.cli", "-A", "tasks:app", "status", "-Q", QUEUES],
                    cwd=HERE,
                    check=False,
                )
            console.print(f"worker stopped with SIGTERM (exit status {worker.returncode})")
            log = (Path(tmp) / "worker.log").read_text(errors="replace").splitlines()
            retries = [line for line in log if " retry: " in line]
            for line in retries:
                console.print(f"worker log: flaky() {line.split(' retry: ', 1)[-1]}", markup=False)
        finally:
            app.close()
    console.print()
    console.print(summary(rows, time.perf_counter() - started))
    failed = [r.scenario for r in rows if not r.ok]
    if failed or worker.returncode != 0:
        console.print(f"[red]demo failed[/]: {', '.join(failed) or 'worker exit status'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
