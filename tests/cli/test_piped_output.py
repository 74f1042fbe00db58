"""Listing commands piped (stdout a pipe, as in ``celeriac dlq list default | grep ...``) and with
``--json``, through the real program in a subprocess against the session's private Redis.

A rich table written to a pipe is sized for 80 columns: it dropped the reason column and cut every
value to a few characters. Piped, every field is printed in full, one record per line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from celeriac import Celeriac
from celeriac.message import Message, new_task_id

pytestmark = pytest.mark.redis

LONG_REASON = "NotRegistered: " + "a very long reason " * 20 + "\twith a tab\nand a second line"


def celeriac(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``celeriac`` program with stdout and stderr as pipes (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_")}
    env.pop("COLUMNS", None)  # as in a plain pipe: rich would size a table for 80 columns
    return subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "--broker", redis_url, *args],
        capture_output=True,  # pipes, not a terminal
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def dead_letters(redis_url: str) -> list[tuple[str, str]]:
    """Three dead letters in ``default``: (task id, task name); the second with a long reason."""
    app = Celeriac("piped", broker=redis_url)
    keys = app.broker.keys.queue("default")  # type: ignore[attr-defined]
    client = redis.Redis.from_url(redis_url)
    made = []
    for n, reason in enumerate(["first reason", LONG_REASON, "third"]):
        task_id = new_task_id()
        name = f"shop.tasks.some_rather_long_task_name_{n}"
        data = app.codec.encode(Message(task_id, name, (n,)))
        client.xadd(keys.dead, {"m": data, "reason": reason, "time": 1_700_000_000_000 + n})
        made.append((task_id, name))
    client.close()
    app.close()
    return made


def test_dlq_list_piped_prints_every_field_in_full(
    redis_url: str, dead_letters: list[tuple[str, str]]
) -> None:
    run = celeriac(redis_url, "dlq", "list", "default")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split("\t") == ["entry_id", "task_id", "task", "reason", "time"]
    assert len(lines) == 1 + len(dead_letters)  # one record per line, even with a newline in a reason
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == 5 for row in rows)  # the tab inside the reason is escaped
    assert [(r[1], r[2]) for r in rows] == dead_letters  # full ids and names, not cut
    assert rows[1][3] == LONG_REASON.replace("\t", "\\t").replace("\n", "\\n")
    assert rows[0][4].startswith("2023-11-")
    assert "Dead letters of 'default' (3 of 3)" in run.stderr  # the title is for a person

    # what `| grep` sees: the whole record on the line that matches
    (hit,) = [line for line in lines if "second line" in line]
    assert dead_letters[1][0] in hit and dead_letters[1][1] in hit


def test_dlq_list_json_lines(redis_url: str, dead_letters: list[tuple[str, str]]) -> None:
    run = celeriac(redis_url, "dlq", "list", "default", "--json")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["task_id"], r["task"]) for r in records] == dead_letters
    assert records[1]["reason"] == LONG_REASON
    assert records[0]["time_ms"] == 1_700_000_000_000
    assert set(records[0]) == {"entry_id", "task_id", "task", "reason", "time_ms", "time", "size_bytes"}
    assert run.stderr == ""
    empty = celeriac(redis_url, "dlq", "list", "nothing-here", "--json")
    assert empty.returncode == 0 and empty.stdout == ""


def test_dlq_list_table_on_request(redis_url: str, dead_letters: list[tuple[str, str]]) -> None:
    run = celeriac(redis_url, "dlq", "list", "default", "--table")
    assert run.returncode == 0 and "Dead letters of 'default'" in run.stdout
    both = celeriac(redis_url, "dlq", "list", "default", "--table", "--json")
    assert both.returncode == 2 and "at most one of --json and --table" in both.stderr


def test_status_piped_and_json(redis_url: str) -> None:
    app = Celeriac("piped", broker=redis_url)
    long_queue = "a-queue-with-a-name-much-longer-than-a-table-column-would-show-" + "x" * 40
    app.send_task("t.x", queue=long_queue)
    app.send_task("t.x", queue=long_queue, countdown=600)
    app.close()
    run = celeriac(redis_url, "status", "-Q", long_queue)
    assert run.returncode == 0, run.stderr
    queues, workers = run.stdout.split("\n\n")
    lines = queues.splitlines()
    assert lines[0].split("\t") == ["queue", "ready", "delayed", "running", "dead", "state"]
    assert f"{long_queue}\t1\t1\t0\t0\tactive" in lines
    assert workers.splitlines()[0].startswith("worker\tqueues\tpool/slots")
    assert "broker: redis://" in run.stderr and "no live workers" in run.stderr

    doc = json.loads(celeriac(redis_url, "status", "-Q", long_queue, "--json").stdout)
    assert doc["broker"] == redis_url
    row = {"queue": long_queue, "ready": 1, "delayed": 1, "running": 0, "dead": 0, "paused": False}
    assert row in doc["queues"]
    assert doc["workers"] == []
