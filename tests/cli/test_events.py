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
    while not any(c.get("cmd") == "xread" for c in client.client_list()):
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
    time.sleep(0.3)
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
    time.sleep(0.3)
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
