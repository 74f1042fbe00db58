"""The Django example (examples/django_project) with a real worker process, on SQLite in a temporary
directory: Celery's recipe (settings from django.conf:settings, autodiscovery), delay_on_commit
sending only after a commit and never after a rollback, and database connections closed between tasks
as Django expects. The web side runs in its own process (Django is configured once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import EXAMPLES, WorkerProcess

pytestmark = pytest.mark.redis

PROJECT = EXAMPLES / "django_project"

# the web side: Django's test client posts orders; before_task_publish records each send and whether
# a transaction was open at that moment
WEB = r"""
import json, os, sys, time

import django

django.setup()

from django.db import connection, transaction
from django.test import Client

from celeriac.signals import before_task_publish
from orders.models import Order
from orders.tasks import confirm_order, connection_state
from proj.celery import app

sends = []


@before_task_publish.connect
def record(sender=None, body=None, **_):
    sends.append({"task": sender, "args": list(body[0]), "in_transaction": connection.in_atomic_block})


def wait_confirmed(pk):
    deadline = time.monotonic() + 30
    while not Order.objects.get(pk=pk).confirmed:
        assert time.monotonic() < deadline, f"order {pk} never confirmed"
        time.sleep(0.05)


out = {}
client = Client()
placed = client.post("/orders/", {"item": "book"})
out["placed_status"] = placed.status_code
pk = placed.json()["order"]
wait_confirmed(pk)
out["confirmed"] = True

before = Order.objects.count()
declined = client.post("/orders/", {"item": "car", "card": "declined"})
out["declined_status"] = declined.status_code
out["rows_added_by_rollback"] = Order.objects.count() - before

with transaction.atomic():
    other = Order.objects.create(item="pen")
    confirm_order.delay_on_commit(other.pk)
    out["sent_inside_transaction"] = len(sends) - 1  # the first order's send only
out["sent_after_commit"] = len(sends) - 1
wait_confirmed(other.pk)

# connections: one worker thread runs these one after the other
out["connection_states"] = [connection_state.delay().get(timeout=30) for _ in range(3)]
out["sends"] = sends
out["worker_pid_seen"] = out["connection_states"][0]["pid"] != os.getpid()
print("RESULT " + json.dumps(out))
"""


def _env(redis_url: str, db: Path, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "DJANGO_DB_PATH": str(db),
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PYTHONPATH": str(PROJECT)}
    for var in ("CELERIAC_APP", "CELERIAC_BROKER_URL"):
        full.pop(var, None)
    return subprocess.run(
        [sys.executable, *args], cwd=PROJECT, env=full, capture_output=True, text=True, timeout=120
    )


def _web(env: dict[str, str]) -> dict[str, object]:
    proc = _run(["-c", textwrap.dedent(WEB)], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]))


@pytest.fixture
def database(tmp_path: Path, redis_url: str) -> Path:
    db = tmp_path / "db.sqlite3"
    migrated = _run(["manage.py", "migrate", "-v", "0"], _env(redis_url, db))
    assert migrated.returncode == 0, migrated.stderr
    return db


@pytest.mark.parametrize("pool", ["threads", pytest.param("prefork", marks=pytest.mark.slow)])
def test_commit_rollback_and_connections(
    database: Path, redis_url: str, pool: str, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    env = _env(redis_url, database, CONN_MAX_AGE="0")
    worker = start_worker_process(PROJECT, env, "-A", "proj", "-P", pool, "-c", "1", "-l", "INFO")
    out = _web(env)
    assert out["placed_status"] == 201 and out["confirmed"] is True
    # rolled back: the order does not exist and its task was never sent
    assert out["declined_status"] == 402 and out["rows_added_by_rollback"] == 0
    confirms = [s for s in out["sends"] if s["task"] == "orders.tasks.confirm_order"]  # type: ignore[union-attr]
    assert len(confirms) == 2  # the placed order's and the one below: none for the declined order
    # sent only once the transaction committed, never from inside it
    assert out["sent_inside_transaction"] == 0 and out["sent_after_commit"] == 1
    assert not any(s["in_transaction"] for s in out["sends"])  # type: ignore[union-attr]
    # CONN_MAX_AGE=0: each task finds its connection closed by the previous task's postrun
    assert [s["was_open"] for s in out["connection_states"]] == [False, False, False]  # type: ignore[union-attr]
    assert out["worker_pid_seen"]
    assert "no task is registered" not in worker.log  # autodiscovery found orders.tasks
    assert worker.stop() == 0


@pytest.mark.slow
def test_persistent_connections_are_reused(
    database: Path, redis_url: str, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    env = _env(redis_url, database, CONN_MAX_AGE="none")
    start_worker_process(PROJECT, env, "-A", "proj", "-P", "threads", "-c", "1")
    out = _web(env)
    # CONN_MAX_AGE=None: the connection opened by a task is kept for the next ones (as Django does)
    states = [s["was_open"] for s in out["connection_states"]]  # type: ignore[union-attr]
    assert states[1:] == [True, True]


def test_celeriac_namespace_and_delay_on_commit_without_django(redis_url: str, tmp_path: Path) -> None:
    """Settings under CELERIAC_ names; and delay_on_commit without Django says what to install."""
    script = textwrap.dedent(
        """
        import django
        from django.conf import settings

        settings.configure(CELERIAC_TASK_DEFAULT_QUEUE="orders", CELERIAC_RESULT_EXPIRES=60)
        from celeriac import Celery

        app = Celery("x", broker="memory://", from_env=False)
        app.config_from_object("django.conf:settings", namespace="CELERIAC")
        print(app.conf.task_default_queue, app.conf.result_expires)
        """
    )
    proc = _run(["-c", script], {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["orders", "60.0"]
    blocked = textwrap.dedent(
        """
        import sys
        sys.modules["django"] = None  # as if Django were not installed
        from celeriac import Celery
        from celeriac.exceptions import ConfigurationError

        app = Celery("x", broker="memory://", from_env=False)
        add = app.task(lambda: None, name="add")
        try:
            add.delay_on_commit()
        except ConfigurationError as exc:
            print(exc)
        """
    )
    proc = _run(["-c", blocked], {})
    assert "pip install 'celeriac[django]'" in proc.stdout, proc.stdout + proc.stderr
