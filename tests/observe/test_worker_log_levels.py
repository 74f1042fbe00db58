"""The CLI worker's log level: at the default (WARNING, Celery's) one line per task that failed, was
retried, dead-lettered or revoked, with its name, id and reason, and none per success; the worker's
start and stop lines still show. ``--loglevel info`` adds one line per success with its runtime."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from celeriac import Celeriac

pytestmark = pytest.mark.redis

APP = """
from celeriac import Celeriac, Reject

app = Celeriac("levels")

@app.task(name="lv.ok")
def ok():
    return 1

@app.task(name="lv.fail")
def fail():
    raise ValueError("card declined")

@app.task(name="lv.flaky", autoretry_for=(ConnectionError,), max_retries=1, default_retry_delay=0)
def flaky():
    raise ConnectionError("reset")

@app.task(name="lv.reject")
def reject():
    raise Reject("bad payload")
"""


def run_worker(tmp_path: Path, redis_url: str, *level: str) -> tuple[dict[str, str], str]:
    (tmp_path / "levels.py").write_text(textwrap.dedent(APP))
    producer = Celeriac("levels", broker=redis_url)
    ids = {
        "ok": producer.send_task("lv.ok").id,
        "fail": producer.send_task("lv.fail").id,
        "flaky": producer.send_task("lv.flaky").id,
        "reject": producer.send_task("lv.reject").id,
        "revoked": producer.send_task("lv.ok").id,
    }
    producer.control.revoke(ids["revoked"])
    proc = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "worker", "-A", "levels:app", "--burst", "-c", "1", *level],
        cwd=tmp_path,
        env={**os.environ, "CELERIAC_BROKER_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    producer.close()
    assert proc.returncode == 0, proc.stderr
    return ids, proc.stderr


def task_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " celeriac.task: " in line or "] Task lv." in line]


def one_line(lines: list[str], task_id: str, what: str) -> str:
    hits = [line for line in lines if f"[{task_id}] {what}" in line]
    assert len(hits) == 1, (task_id, what, lines)
    return hits[0]


def test_default_level_one_line_per_failure_retry_dead_letter_revoke(tmp_path: Path, redis_url: str) -> None:
    ids, err = run_worker(tmp_path, redis_url)
    lines = task_lines(err)
    fail = one_line(lines, ids["fail"], "failed in ")
    assert "ERROR" in fail and "Task lv.fail[" in fail and fail.endswith("ValueError: card declined")
    retry = one_line(lines, ids["flaky"], "retry 1")
    assert "WARNING" in retry and retry.endswith("ConnectionError: reset")
    dead = one_line(lines, ids["flaky"], "dead-lettered: ")
    assert "max retries (1) exceeded" in dead
    rejected = one_line(lines, ids["reject"], "dead-lettered: ")
    assert "bad payload" in rejected
    revoked = one_line(lines, ids["revoked"], "revoked: ")
    assert "WARNING" in revoked and "Task lv.ok[" in revoked
    assert not any(ids["ok"] in line for line in lines)  # no line per success at the default level
    assert "Traceback" not in err  # tracebacks only at INFO and below
    assert re.search(r"worker \S+ consuming default", err)  # the worker's own start line still shows
    assert re.search(r"worker \S+ stopped", err)


def test_info_adds_each_success_with_its_runtime(tmp_path: Path, redis_url: str) -> None:
    ids, err = run_worker(tmp_path, redis_url, "--loglevel", "INFO")
    lines = task_lines(err)
    ok = one_line(lines, ids["ok"], "succeeded in ")
    assert "INFO" in ok and re.search(r"succeeded in \d+\.\d+s$", ok)
    one_line(lines, ids["fail"], "failed in ")
    assert "Traceback (most recent call last)" in err  # a failure's traceback follows its line at INFO


def test_error_level_hides_retries_and_the_start_line(tmp_path: Path, redis_url: str) -> None:
    ids, err = run_worker(tmp_path, redis_url, "-l", "error")
    lines = task_lines(err)
    one_line(lines, ids["fail"], "failed in ")
    assert not any(f"[{ids['flaky']}] retry" in line for line in lines)
    assert "consuming" not in err
