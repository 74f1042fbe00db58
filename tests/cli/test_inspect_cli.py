"""``celeriac inspect active | scheduled | stats | ping`` and ``celeriac control shutdown`` against real
workers (threads, and a worker process for the warm shutdown), piped (TSV) and ``--json``, with
Celery's spellings (``-A`` before or after the subcommand, ``-d/--destination``, ``-t``, ``-j``), and
at scale: 200,000 delayed tasks paged, 300 workers listed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest
import redis
from click.testing import Result

from celeriac import Celeriac
from celeriac.message import Message
from celeriac.testing import ThreadWorker

from .conftest import TasksModule

pytestmark = pytest.mark.redis


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _tsv(result: Result) -> list[list[str]]:
    assert result.exit_code == 0, result.output
    return [line.split("\t") for line in result.stdout.splitlines()]


def _running(app: Celeriac, worker_id: str, n: int) -> Callable[[], bool]:
    from celeriac.inspect import Inspect

    def check() -> bool:
        active = Inspect(app, worker_id, timeout=0.5).active()
        return len(active.get(worker_id, [])) >= n

    return check


def test_inspect_active_stats_ping_with_two_workers(
    tasks_module: TasksModule, cli: Callable[..., Result], thread_worker: Callable[..., ThreadWorker]
) -> None:
    app = tasks_module.app

    @app.task(name="ops.pad")
    async def pad(seconds: float, pad: str) -> None:
        await asyncio.sleep(seconds)

    thread_worker(app, worker_id="ops-a@host", concurrency=4)
    thread_worker(app, worker_id="ops-b@host", concurrency=2)
    for _ in range(3):
        pad.delay(3, pad="z" * 500)
    _wait(lambda: sum(len(v) for v in app.control.inspect(timeout=0.5).active().values()) >= 3, "3 running")

    # piped: TSV, a header and one line per running task, args cut
    rows = _tsv(cli("inspect", "active", "-A", tasks_module.spec))
    assert rows[0] == ["worker", "id", "name", "args", "kwargs", "started", "runtime_s", "queue"]
    assert len(rows) == 4
    assert {r[0] for r in rows[1:]} <= {"ops-a@host", "ops-b@host"}
    for r in rows[1:]:
        assert r[2] == "ops.pad" and r[3] == "(3,)" and r[7] == "default"
        assert r[4].startswith("{'pad': 'zzz") and r[4].endswith("...") and len(r[4]) == 100
        assert float(r[6]) >= 0

    # Celery's spellings: -A before the subcommand, -d, -t, -j; JSON keyed by worker name
    result = cli("-A", tasks_module.spec, "inspect", "active", "-d", "ops-b@host", "-t", "1", "-j")
    assert result.exit_code == 0, result.output
    by_worker = json.loads(result.stdout)
    assert list(by_worker) == ["ops-b@host"]
    for task in by_worker["ops-b@host"]:
        assert {"id", "name", "args", "kwargs", "time_start", "hostname", "delivery_info"} <= set(task)
        assert task["hostname"] == "ops-b@host"

    stats = _tsv(cli("inspect", "stats", "-A", tasks_module.spec, "--destination", "ops-a@host,ops-b@host"))
    assert stats[0][:6] == ["worker", "hostname", "pid", "pool", "concurrency", "running"]
    assert [r[0] for r in stats[1:]] == ["ops-a@host", "ops-b@host"]
    assert [r[4] for r in stats[1:]] == ["4", "2"]
    assert all(r[3] == "asyncio" and int(r[8]) > 0 and r[10] == "default" for r in stats[1:])
    doc = json.loads(cli("inspect", "stats", "-A", tasks_module.spec, "--json").stdout)
    assert doc["ops-a@host"]["pool"]["max-concurrency"] == 4
    assert doc["ops-a@host"]["pid"] == os.getpid()  # thread workers run in this process
    assert doc["ops-a@host"]["rss_kb"] > 0 and doc["ops-a@host"]["uptime"] >= 0

    ping = _tsv(cli("inspect", "ping", "-A", tasks_module.spec))
    assert ping == [["worker", "reply"], ["ops-a@host", "pong"], ["ops-b@host", "pong"]]
    assert app.control.ping(timeout=1) == [{"ops-a@host": {"ok": "pong"}}, {"ops-b@host": {"ok": "pong"}}]


def test_inspect_unknown_destination_is_an_error(
    tasks_module: TasksModule, cli: Callable[..., Result], thread_worker: Callable[..., ThreadWorker]
) -> None:
    thread_worker(tasks_module.app, worker_id="ops-c@host")
    result = cli("inspect", "active", "-A", tasks_module.spec, "-d", "nobody@nowhere")
    assert result.exit_code == 1
    assert "no live worker named nobody@nowhere" in result.stderr
    assert "Error: no live workers" in result.stderr
    result = cli("control", "shutdown", "-A", tasks_module.spec, "-d", "nobody@nowhere")
    assert result.exit_code == 1
    assert "no live worker named nobody@nowhere (live workers: ops-c@host)" in result.stderr
    with pytest.raises(ValueError, match="nobody@nowhere"):
        tasks_module.app.control.shutdown(destination=["nobody@nowhere"])


def test_inspect_without_workers_exits_1(tasks_module: TasksModule, cli: Callable[..., Result]) -> None:
    result = cli("inspect", "stats", "-A", tasks_module.spec)
    assert result.exit_code == 1
    assert "no live workers" in result.stderr


def test_inspect_active_lists_300_workers(tasks_module: TasksModule, cli: Callable[..., Result]) -> None:
    """300 registered workers (heartbeats written as a worker writes them; none answers the refresh):
    every one is listed with its tasks, ping says none replied."""
    app = tasks_module.app
    now = time.time()

    async def register() -> None:
        broker = app.broker.for_worker()  # type: ignore[attr-defined]
        await broker.open([])
        for i in range(300):
            active = [
                {"id": f"t{i}-{j}", "name": "cli.nap", "args": "(1,)", "kwargs": "{}", "time_start": now - j}
                for j in range(3)
            ]
            fields = {"pool": "asyncio", "concurrency": "10", "active": json.dumps(active), "beat_at": "1"}
            await broker.heartbeat(f"fake-{i:03d}@host", fields, 60.0, ["default"])
        await broker.close()

    asyncio.run(register())
    rows = _tsv(cli("inspect", "active", "-A", tasks_module.spec, "-t", "0.2"))
    assert len(rows) == 1 + 900
    assert sorted({r[0] for r in rows[1:]}) == [f"fake-{i:03d}@host" for i in range(300)]
    active = app.control.inspect(timeout=0).active()
    assert len(active) == 300 and all(len(tasks) == 3 for tasks in active.values())
    assert app.control.inspect(timeout=0.2).ping() == {}
    result = cli("inspect", "ping", "-A", tasks_module.spec, "-t", "0.2")
    assert result.exit_code == 1 and "no worker answered within 0.2s" in result.stderr


def test_inspect_scheduled_pages_200k_delayed_tasks(
    tasks_module: TasksModule, cli: Callable[..., Result]
) -> None:
    """200,000 delayed tasks: each page reads only what it shows (ZRANGE by rank), soonest first."""
    app = tasks_module.app
    broker = app.broker
    r = redis.Redis.from_url(tasks_module.broker_url)
    delayed = broker.keys.queue("default").delayed  # type: ignore[attr-defined]
    base_ms = int(time.time() * 1000) + 3_600_000
    n = 200_000
    for start in range(0, n, 10_000):
        batch = {
            app.codec.encode(Message(id=f"d{i:06d}", task="cli.add", args=(i, i))): base_ms + i
            for i in range(start, start + 10_000)
        }
        r.zadd(delayed, batch)  # type: ignore[arg-type]
    app.tasks["cli.add"].apply_async((1, 1), countdown=7200, queue="other")  # another queue, due after all

    result = cli("inspect", "scheduled", "-A", tasks_module.spec)
    rows = _tsv(result)
    assert rows[0] == ["queue", "eta", "waiting_for", "id", "name", "args", "kwargs", "priority"]
    assert [row[3] for row in rows[1:]] == [f"d{i:06d}" for i in range(100)]  # default --limit 100
    assert all(row[2] == "eta" and row[4] == "cli.add" for row in rows[1:])
    assert "per queue: default 200000" in result.stderr

    page = _tsv(cli("inspect", "scheduled", "-A", tasks_module.spec, "-Q", "default", "--offset", "199998"))
    assert [row[3] for row in page[1:]] == ["d199998", "d199999"]  # the last page: what is left
    both = _tsv(
        cli("inspect", "scheduled", "-A", tasks_module.spec, "-Q", "default,other", "--offset", "199999")
    )
    assert [(row[0], row[3]) for row in both[1:]][:1] == [("default", "d199999")]  # then the other one
    assert [row[0] for row in both[1:]] == ["default", "other"]

    doc = json.loads(
        cli("inspect", "scheduled", "-A", tasks_module.spec, "-Q", "default", "--limit", "3", "-j").stdout
    )
    assert doc["total"] == {"default": 200_000}
    assert [e["request"]["id"] for e in doc["queues"]["default"]] == ["d000000", "d000001", "d000002"]
    assert doc["queues"]["default"][1]["request"]["args"] == "(1, 1)"
    assert doc["queues"]["default"][0]["eta"].endswith("+00:00")

    # the Python API: Celery's shape, keyed by queue (the tasks wait in Redis, not on a worker)
    sched = app.control.inspect(limit=2, queues=["default"]).scheduled()
    assert list(sched) == ["default"] and [e["request"]["id"] for e in sched["default"]] == [
        "d000000",
        "d000001",
    ]


def test_inspect_scheduled_marks_rate_limited_tasks(
    tasks_module: TasksModule, cli: Callable[..., Result]
) -> None:
    """A task handed back by a rate limiter waits in the delayed set too: shown as waiting_for rate_limit."""
    app = tasks_module.app
    r = redis.Redis.from_url(tasks_module.broker_url)
    delayed = app.broker.keys.queue("default").delayed  # type: ignore[attr-defined]
    due = int(time.time() * 1000) + 60_000
    marked = Message(id="rl-1", task="cli.add", args=(1, 2), extra={"rl": due})
    r.zadd(delayed, {app.codec.encode(marked): due})
    rows = _tsv(cli("inspect", "scheduled", "-A", tasks_module.spec))
    assert [row[2:4] for row in rows[1:]] == [["rate_limit", "rl-1"]]


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celeriac.cli", "worker", *args]


def test_control_shutdown_is_warm_and_the_worker_exits_0(
    tasks_module: TasksModule, cli: Callable[..., Result]
) -> None:
    """`celeriac control shutdown -d W`: W stops taking tasks, lets its running task finish (its result
    is stored), exits 0 and unregisters; the other worker keeps running until shut down in turn."""
    app = tasks_module.app
    procs = {
        name: subprocess.Popen(
            worker_command("-A", tasks_module.spec, "-n", name, "-c", "2", "--loglevel", "info"),
            cwd=tasks_module.path,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("ops-w1@host", "ops-w2@host")
    }
    try:
        _wait(lambda: {w.worker_id for w in app.broker.workers()} >= set(procs), "workers registered", 30)
        result = app.send_task("cli.nap", (2,), queue="default")
        _wait(
            lambda: any(app.control.inspect(timeout=0.5).active().values()),
            "the nap task running",
        )
        running_on = next(w for w, tasks in app.control.inspect(timeout=0.5).active().items() if tasks)
        other = next(w for w in procs if w != running_on)
        out = cli("control", "shutdown", "-A", tasks_module.spec, "-d", running_on)
        assert out.exit_code == 0, out.output
        assert out.stdout.splitlines() == [running_on]
        _, err = procs[running_on].communicate(timeout=60)
        assert procs[running_on].returncode == 0, err
        assert "shutdown requested (celeriac control shutdown): warm shutdown" in err
        assert result.get(timeout=5) == 2  # the running task finished: warm, not handed back
        assert "succeeded" in err and "handed" not in err
        assert procs[other].poll() is None  # not its destination
        assert {w.worker_id for w in app.broker.workers()} == {other}

        doc = json.loads(cli("control", "shutdown", "-A", tasks_module.spec, "--json").stdout)
        assert doc == {"shutdown": [other]}
        _, err = procs[other].communicate(timeout=60)
        assert procs[other].returncode == 0, err
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_a_worker_started_after_a_shutdown_ignores_it(
    tasks_module: TasksModule, thread_worker: Callable[..., ThreadWorker]
) -> None:
    """Commands are for the workers live when sent: a worker started later reads the stream from its
    start and skips them."""
    app = tasks_module.app
    first = thread_worker(app, worker_id=f"ops-old-{uuid.uuid4().hex[:6]}")
    assert app.control.shutdown() == [first.worker.worker_id]
    first.thread.join(timeout=30)
    assert not first.thread.is_alive()
    later = thread_worker(app, worker_id="ops-later")
    assert app.tasks["cli.add"].delay(2, 2).get(timeout=10) == 4
    assert later.thread.is_alive() and not later.worker.stopping
