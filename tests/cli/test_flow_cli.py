"""``celeriac queue pause|resume`` and the paused state in ``celeriac status``, typed and piped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from click.testing import Result

from .conftest import TasksModule

pytestmark = pytest.mark.redis

Cli = Callable[..., Result]


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def test_pause_resume_and_status(cli: Cli, tasks_module: TasksModule) -> None:
    assert "queue 'default' paused" in ok(cli("queue", "pause", "default"))
    assert "was paused already" in ok(cli("queue", "pause", "default"))
    status = ok(cli("status"))
    assert "paused" in status
    assert json.loads(ok(cli("queue", "resume", "default", "--json"))) == {
        "queue": "default",
        "action": "resume",
        "changed": True,
    }
    assert "was not paused" in ok(cli("queue", "resume", "default"))
    assert "paused" not in ok(cli("status")).split("Workers")[0].replace("state", "")


def test_piped(tasks_module: TasksModule) -> None:
    env = {**os.environ, "CELERIAC_BROKER_URL": tasks_module.broker_url}
    run = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "queue", "pause", "io", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["changed"] is True
    status = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "status", "-Q", "io"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "\x1b[" not in status.stdout
    rows = [line.split("\t") for line in status.stdout.splitlines()]
    assert rows[0][-1] == "state"
    assert next(row for row in rows if row[0] == "io")[-1] == "paused"
    assert next(row for row in rows if row[0] == "default")[-1] == "active"
