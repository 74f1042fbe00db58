"""``celeriac worker`` as a real process: the console entry point, logging, burst exit and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import TasksModule

pytestmark = pytest.mark.redis


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celeriac.cli", "worker", *args]


def test_worker_burst_subprocess(tasks_module: TasksModule) -> None:
    app = tasks_module.app
    results = [app.tasks["cli.add"].delay(i, i) for i in range(50)]
    napped = app.tasks["cli.nap"].apply_async((0.01,), queue="io")
    env = {**os.environ, "CELERIAC_WORKER_QUEUES": "default,io"}
    proc = subprocess.run(
        worker_command("-A", tasks_module.spec, "--burst", "-c", "20", "--loglevel", "info"),
        cwd=tasks_module.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert [r.get(timeout=5) for r in results] == [2 * i for i in range(50)]
    assert napped.get(timeout=5) == 0.01
    assert "consuming default,io" in proc.stderr
    assert "processed 51: 51 succeeded" in proc.stderr
    assert tasks_module.broker_url.split("//")[1].split("/")[0] in proc.stderr  # the (redacted) broker


def test_worker_stops_on_sigterm(tasks_module: TasksModule) -> None:
    app = tasks_module.app
    proc = subprocess.Popen(
        worker_command("-A", tasks_module.spec, "-n", "sigterm-worker"),
        cwd=tasks_module.path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not any(w.worker_id == "sigterm-worker" for w in app.broker.workers()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "worker did not register"
            time.sleep(0.02)
        assert app.tasks["cli.add"].delay(2, 3).get(timeout=10) == 5
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "warm shutdown" in err
    assert not any(w.worker_id == "sigterm-worker" for w in app.broker.workers())


def test_worker_bad_app_exits_with_a_message(tasks_module: TasksModule) -> None:
    proc = subprocess.run(
        worker_command("-A", f"{tasks_module.name}:missing"),
        cwd=tasks_module.path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert f"has no attribute 'missing'; it defines app, other: use -A {tasks_module.name}:app" in proc.stderr
    assert "Traceback" not in proc.stderr
