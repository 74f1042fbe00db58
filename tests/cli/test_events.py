"""``celeriac events``: outcomes streamed as workers record them, human or ``--json``, output piped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import redis

from celeriac.testing import ThreadWorker

from .conftest import TasksModule

pytestmark = pytest.mark.redis


def events_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celeriac.cli", "events", *args]


def wait_recorded(tasks_module: TasksModule, queue: str, n: int) -> None:
    """Until ``n`` outcomes of ``queue`` are in the monitor's log: written, not only noted (a worker
    writes them up to a second after their acks)."""
    from celeriac.monitor import MonitorReader

    client = redis.Redis.from_url(tasks_module.broker_url)
    reader = MonitorReader(client)
    deadline = time.monotonic() + 20
    while reader.sizes([queue])[queue][0] < n:
        assert time.monotonic() < deadline, f"{n} outcomes of {queue} never recorded"
        time.sleep(0.05)
    client.close()


def start_events(tasks_module: TasksModule, *args: str) -> subprocess.Popen[str]:
    """``celeriac events`` with its stdout a pipe (as in ``celeriac events | jq``)."""
    proc = subprocess.Popen(
        events_command("-A", tasks_module.spec, *args),
        cwd=tasks_module.path,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # ready once it blocks in XREAD (it resolved each stream's last id first): later outcomes are all seen
    client = redis.Redis.from_url(tasks_module.broker_url)
    deadline = time.monotonic() + 30
    # (by name: workers block in XREAD too, on the revocation stream)
    while not any(
        c.get("cmd") == "xread" and c.get("name") == "celeriac-events" for c in client.client_list()
    ):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "celeriac events never blocked in XREAD"
        time.sleep(0.05)
    client.close()
    return proc


def test_events_json_streams_outcomes_as_they_happen(
    tasks_module: TasksModule, thread_worker: Callable[..., ThreadWorker]
) -> None:
    app = tasks_module.app
    app.tasks["cli.add"].delay(0, 0)  # recorded before `events` starts: not shown (no --since)
    worker = thread_worker(app, queues=["default", "io"], concurrency=4)
    worker.wait_outcomes(lambda outs: len(outs) >= 1, timeout_s=10)
    wait_recorded(tasks_module, "default", 1)
    proc = start_events(tasks_module, "--json", "-Q", "default,io", "-n", "3", "--timeout", "30")
    ok = app.tasks["cli.add"].delay(2, 3)
    bad = app.tasks["cli.boom"].delay()
    napped = app.tasks["cli.nap"].apply_async((0.01,), queue="io")
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3, out
    by_id = {line["id"]: line for line in lines}
    assert set(by_id) == {ok.id, bad.id, napped.id}
    assert by_id[ok.id]["state"] == "SUCCESS"
    assert by_id[ok.id]["name"] == "cli.add"
    assert by_id[ok.id]["queue"] == "default"
    assert by_id[ok.id]["worker"] == worker.worker.worker_id
    assert by_id[ok.id]["runtime_s"] >= 0
    assert by_id[bad.id]["state"] == "FAILURE"
    assert by_id[bad.id]["exception_type"].endswith("ValueError")
    assert by_id[bad.id]["exception_message"] == "kaboom"
    assert "traceback" not in by_id[bad.id]
    assert by_id[napped.id]["queue"] == "io"


def test_events_human_lines_filters_and_since(
    tasks_module: TasksModule, thread_worker: Callable[..., ThreadWorker]
) -> None:
    app = tasks_module.app
    worker = thread_worker(app, queues=["default"], concurrency=2)
    earlier = app.tasks["cli.boom"].delay()
    worker.wait_outcomes(lambda outs: len(outs) >= 1, timeout_s=10)
    wait_recorded(tasks_module, "default", 1)
    # --since shows what was recorded before it started; queues found without -Q; only failures
    proc = start_events(tasks_module, "--since", "60", "--state", "failure", "-n", "2", "--timeout", "30")
    for i in range(3):
        app.tasks["cli.add"].delay(i, i)
    later = app.tasks["cli.boom"].delay()
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert f"cli.boom[{earlier.id}]" in lines[0]
    assert f"cli.boom[{later.id}]" in lines[1]
    for line in lines:
        assert " FAILURE " in line
        assert "queue=default" in line
        assert "ValueError: kaboom" in line


def test_events_until_timeout_prints_nothing_when_idle(tasks_module: TasksModule) -> None:
    proc = subprocess.run(
        events_command("-A", tasks_module.spec, "--timeout", "1"),
        cwd=tasks_module.path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def fill_outcomes(url: str, n: int, failed_every: int = 100) -> None:
    """``n`` outcomes in the default queue's log, through the workers' own write path (Recorder)."""
    import asyncio

    from celeriac._redis.client import async_client
    from celeriac.broker.base import Delivery
    from celeriac.execution import Outcome
    from celeriac.message import Message, new_task_id
    from celeriac.monitor.recorder import MonitorSettings, Recorder
    from celeriac.states import TaskState

    async def main() -> None:
        recorder = Recorder(
            async_client(url, max_connections=2), "celeriac", "scale-worker", MonitorSettings()
        )
        now_ms = int(time.time() * 1000)
        for start in range(0, n, 5000):
            for i in range(start, min(n, start + 5000)):
                tid = new_task_id()
                failed = i % failed_every == 0
                outcome = Outcome(
                    "ack",
                    tid,
                    "scale.task",
                    TaskState.FAILURE if failed else TaskState.SUCCESS,
                    exc=ValueError(f"boom {i}") if failed else None,
                    runtime_s=0.001,
                )
                recorder.add(
                    Delivery("default", f"{now_ms}-{i}", b""),
                    outcome,
                    Message(tid, "scale.task", (i,)),
                    time.time(),
                )
            await recorder.flush()
        assert recorder.recorded == n
        await recorder.close()

    asyncio.run(main())


@pytest.mark.slow
def test_events_at_scale_since_and_piped_to_head(tasks_module: TasksModule) -> None:
    """200,000 recorded outcomes: --since streams all of them (in bounded replies), -n and `| head`
    stop early."""
    n = 200_000
    fill_outcomes(tasks_module.broker_url, n)
    env = dict(os.environ)
    started = time.monotonic()
    proc = subprocess.run(
        events_command(
            "-A", tasks_module.spec, "-Q", "default", "--since", "3600", "--json", "--timeout", "60"
        ),
        cwd=tasks_module.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == n
    streamed_s = time.monotonic() - started
    records = [json.loads(line) for line in lines]
    assert len({r["id"] for r in records}) == n
    assert sum(r["state"] == "FAILURE" for r in records) == n // 100
    # the first lines come at once, whatever the backlog: -n stops after them
    quick = subprocess.run(
        events_command("-A", tasks_module.spec, "-Q", "default", "--since", "3600", "-n", "5"),
        cwd=tasks_module.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert quick.returncode == 0 and len(quick.stdout.splitlines()) == 5
    # piped into `head`: the reader leaves, and events exits quietly (no BrokenPipe traceback)
    piped = subprocess.run(
        " ".join(
            events_command("-A", tasks_module.spec, "-Q", "default", "--since", "3600", "--timeout", "60")
        )
        + " | head -n 3",
        shell=True,
        cwd=tasks_module.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(piped.stdout.splitlines()) == 3
    assert "Traceback" not in piped.stderr, piped.stderr
    print(f"celeriac events --json: {n} outcomes streamed in {streamed_s:.1f}s")
