"""``celeriac beat`` and its subcommands: as typed, with --json, piped, and the standalone scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import redis
from click.testing import Result

from .conftest import TasksModule

pytestmark = pytest.mark.redis

Cli = Callable[..., Result]


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def test_add_list_pause_resume_run_now_remove(cli: Cli, tasks_module: TasksModule) -> None:
    spec = tasks_module.spec
    out = ok(
        cli(
            "-A",
            spec,
            "beat",
            "add",
            "nightly",
            "cli.add",
            "30 2 * * *",
            "--args",
            "[1, 2]",
            "--tz",
            "Europe/Paris",
        )
    )
    assert "added 'nightly'" in out and "cron 30 2 * * * tz=Europe/Paris" in out
    ok(
        cli(
            "-A",
            spec,
            "beat",
            "add",
            "often",
            "cli.add",
            "15",
            "--args",
            "[3, 4]",
            "-Q",
            "io",
            "--expires",
            "10",
        )
    )
    table = ok(cli("-A", spec, "beat", "list"))
    assert "nightly" in table and "often" in table and "dynamic" in table
    rows = json.loads(ok(cli("-A", spec, "beat", "list", "--json")))
    assert [r["name"] for r in rows] == ["nightly", "often"]
    often = rows[1]
    assert (
        often["schedule"] == "every 15s"
        and often["queue"] == "io"
        and often["options"] == {"queue": "io", "expires": 10.0}
    )
    assert often["next_run_ms"] > time.time() * 1000 and often["paused"] is False
    assert json.loads(ok(cli("-A", spec, "beat", "pause", "often", "--json"))) == {
        "name": "often",
        "action": "pause",
        "changed": True,
    }
    assert "was paused already" in ok(cli("-A", spec, "beat", "pause", "often"))
    assert json.loads(ok(cli("-A", spec, "beat", "list", "--json")))[1]["paused"] is True
    assert "resumed" in ok(cli("-A", spec, "beat", "resume", "often"))
    sent = json.loads(ok(cli("-A", spec, "beat", "run-now", "often", "--json")))
    assert sent["name"] == "often" and len(sent["task_id"]) == 36
    assert tasks_module.app.broker.stats("io").ready == 1
    assert "removed" in ok(cli("-A", spec, "beat", "remove", "often"))
    assert [r["name"] for r in json.loads(ok(cli("-A", spec, "beat", "list", "--json")))] == ["nightly"]


def test_errors_are_one_line(cli: Cli, tasks_module: TasksModule) -> None:
    spec = tasks_module.spec
    result = cli("-A", spec, "beat", "add", "bad", "cli.add", "61 * * * *")
    assert result.exit_code == 1 and "Error:" in result.stderr and "out of range" in result.stderr
    assert "'bad'" in result.stderr
    result = cli("-A", spec, "beat", "add", "zero", "cli.add", "0")
    assert result.exit_code == 1 and "period" in result.stderr
    result = cli("-A", spec, "beat", "remove", "nope")
    assert result.exit_code == 1 and "no such entry" in result.stderr
    result = cli("-A", spec, "beat", "run-now", "nope")
    assert result.exit_code == 1 and "no such entry" in result.stderr
    result = cli("-A", spec, "beat", "add", "x", "cli.add", "10", "--args", "{}")
    assert result.exit_code == 2 and "JSON array" in result.stderr
    assert "no periodic entries" in cli("-A", spec, "beat", "list", "--table").output
    assert ok(cli("-A", spec, "beat", "list", "--json")).strip() == "[]"


def _run(tasks_module: TasksModule, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CELERIAC_BROKER_URL": tasks_module.broker_url, "PYTHONPATH": str(tasks_module.path)}
    return subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "-A", tasks_module.spec, "beat", *args],
        cwd=tasks_module.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_piped_output_is_plain_and_json_parses(tasks_module: TasksModule) -> None:
    assert _run(tasks_module, "add", "p", "cli.add", "*/5 * * * *", "--args", "[1, 1]").returncode == 0
    listed = _run(tasks_module, "list")
    assert listed.returncode == 0 and "\x1b[" not in listed.stdout and "p" in listed.stdout
    as_json = _run(tasks_module, "list", "--json")
    assert json.loads(as_json.stdout)[0]["schedule"] == "cron */5 * * * *".replace(
        "*/5", "0,5,10,15,20,25,30,35,40,45,50,55"
    )
    run = _run(tasks_module, "run-now", "p", "--json")
    assert json.loads(run.stdout)["name"] == "p"


def test_standalone_scheduler_process_runs_the_beat_schedule(tasks_module: TasksModule) -> None:
    (tasks_module.path / f"{tasks_module.name}.py").write_text(
        (tasks_module.path / f"{tasks_module.name}.py").read_text()
        + '\napp.conf.beat_schedule = {"tick": {"task": "cli.add", "schedule": 1.0, "args": (1, 2)}}\n'
    )
    env = {**os.environ, "CELERIAC_BROKER_URL": tasks_module.broker_url, "PYTHONPATH": str(tasks_module.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celeriac.cli", "beat", "-A", tasks_module.spec, "-l", "info"],
        cwd=tasks_module.path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    r = redis.Redis.from_url(tasks_module.broker_url)
    try:
        deadline = time.monotonic() + 20
        while r.zcard("celeriac:{default}:delayed") + r.xlen("celeriac:{default}:ready") < 3:
            assert time.monotonic() < deadline and proc.poll() is None, "no periodic runs enqueued"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        r.close()
    assert proc.returncode == 0, err
    assert "1 periodic entry" in err


def test_bad_beat_schedule_fails_at_start_naming_the_entry(tasks_module: TasksModule) -> None:
    (tasks_module.path / f"{tasks_module.name}.py").write_text(
        (tasks_module.path / f"{tasks_module.name}.py").read_text()
        + '\napp.conf.beat_schedule = {"broken": {"task": "cli.nope", "schedule": 5}}\n'
    )
    env = {**os.environ, "CELERIAC_BROKER_URL": tasks_module.broker_url, "PYTHONPATH": str(tasks_module.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "beat", "-A", tasks_module.spec],
        cwd=tasks_module.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "broken" in proc.stderr and "unknown task 'cli.nope'" in proc.stderr
    assert "Traceback" not in proc.stderr
