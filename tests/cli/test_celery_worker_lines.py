"""Celery's worker command lines, with ``celery`` replaced by ``celeriac``, as real processes on a real
Redis: the seeds' own lines (gevent with -c 100, --autoscale=10,3, --max-memory-per-child=200000),
Celery's project layout (an app module without tasks, tasks in a package with @shared_task and a base
Task class), hooks and worker_process_init in the process pool's children, Celery's JSON types."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from tests.support import CliProcess

from celeriac import Celeriac

pytestmark = pytest.mark.redis

APP = """
import os
from celeriac import Celery

celery = Celery("proj", broker=os.environ["TEST_REDIS_URL"], backend=os.environ["TEST_REDIS_URL"])
"""

TASKS = """
import os

import redis

from celeriac import Task, shared_task
from celeriac.signals import worker_process_init, worker_ready
from celeriac.utils.log import get_task_logger

r = redis.Redis.from_url(os.environ["TEST_REDIS_URL"], decode_responses=True)
logger = get_task_logger(__name__)


@worker_process_init.connect
def open_connections(**kwargs):
    r.rpush("test:process_init", os.getpid())


@worker_ready.connect
def ready(sender=None, **kwargs):
    r.rpush("test:ready", sender.worker_id)


class Base(Task):
    max_retries = 0

    def on_success(self, retval, task_id, args, kwargs):
        r.rpush("test:hooks", f"success:{os.getpid()}:{task_id}")

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        r.rpush("test:hooks", f"failure:{os.getpid()}:{type(exc).__name__}:{'KeyError' in str(einfo)}")


@shared_task(base=Base, name="scrape.echo", ignore_result=False)
def echo(*values):
    logger.warning("echoing %d values", len(values))  # shown at the default level (WARNING)
    return [list(values), os.getpid()]


@shared_task(base=Base, name="scrape.boom")
def boom():
    raise KeyError("nope")
"""

VALUES = [
    dt.datetime(2026, 12, 3, 22, 0, 1, 5, tzinfo=dt.timezone.utc),
    dt.datetime(2026, 12, 3, 22, 0),
    dt.date(2026, 12, 3),
    dt.time(22, 0, 1),
    dt.timedelta(hours=1, microseconds=3),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("10.05"),
]


@pytest.fixture
def project(tmp_path: Path, redis_url: str) -> Iterator[Path]:
    (tmp_path / "celery_worker.py").write_text(textwrap.dedent(APP))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "__init__.py").write_text("")
    (tmp_path / "tasks" / "api_scraper.py").write_text(textwrap.dedent(TASKS))
    r = redis.Redis.from_url(redis_url)
    r.delete("test:process_init", "test:hooks", "test:ready")
    yield tmp_path
    r.delete("test:process_init", "test:hooks", "test:ready")
    r.close()


class Proc(CliProcess):
    def __init__(self, args: list[str], cwd: Path, redis_url: str) -> None:
        super().__init__(args, cwd, {"TEST_REDIS_URL": redis_url})


@pytest.fixture
def run(project: Path, redis_url: str) -> Iterator[object]:
    started: list[Proc] = []

    def start(*args: str) -> Proc:
        proc = Proc(list(args), project, redis_url)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def producer(redis_url: str) -> Celeriac:
    return Celeriac("producer", broker=redis_url, from_env=False, set_as_current=False)


def check_echo(app: Celeriac) -> int:
    result = app.send_task("scrape.echo", args=VALUES, queue="api-scraper")
    values, pid = result.get(timeout=30)
    assert values == VALUES  # Celery's JSON types round-trip through a real worker, without pickle
    return int(pid)


def test_seed_line_gevent(run, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    w = run(
        *shlex.split(
            "worker -A celery_worker.celery -Q api-scraper --without-gossip --without-mingle "
            "--without-heartbeat -P gevent -c 100 -I tasks.api_scraper"
        )
    )
    w.wait_for("consuming api-scraper (pool=gevent, concurrency=100")
    app = producer(redis_url)
    try:
        assert check_echo(app) == w.proc.pid
    finally:
        app.close()
    assert w.stop() == 0
    log = w.log
    for flag in ("--without-gossip", "--without-mingle", "--without-heartbeat"):
        assert log.count(f"{flag}:") == 1, log  # one line each, saying there is nothing to turn off
    # get_task_logger: the task's line carries its name and id
    assert "scrape.echo[" in log and "]: echoing 7 values" in log


def test_seed_line_autoscale_with_app_before_the_subcommand(run, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    w = run(
        *shlex.split(
            "-A celery_worker worker -Q api-scraper --autoscale=10,3 -I tasks.api_scraper -l INFO -n scale@%h"
        )
    )
    w.wait_for("consuming api-scraper")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    app = producer(redis_url)
    try:
        (info,) = [w for w in app.broker.workers() if w.worker_id.startswith("scale@")]  # -n with %h
        assert info.worker_id != "scale@%h"
        assert info.fields["concurrency"] == "3"  # --autoscale=MAX,MIN starts at MIN
        check_echo(app)
        assert r.blpop(["test:ready"], timeout=10) is not None  # worker_ready was sent
    finally:
        app.close()
        r.close()
    assert w.stop() == 0


def test_seed_line_prefork_max_memory_hooks_in_children(run, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    w = run(
        *shlex.split(
            "worker -A celery_worker.celery -Q api-scraper -P prefork -c 2 --max-memory-per-child=200000 "
            "-I tasks.api_scraper"
        )
    )
    w.wait_for("consuming api-scraper (pool=processes, concurrency=2")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    app = producer(redis_url)
    try:
        pid = check_echo(app)
        assert pid != w.proc.pid  # ran in a child
        failed = app.send_task("scrape.boom", queue="api-scraper", ignore_result=False)
        with pytest.raises(KeyError):
            failed.get(timeout=30)
        children = {int(p) for p in r.lrange("test:process_init", 0, -1)}
        assert pid in children and w.proc.pid not in children  # worker_process_init ran in each child
        hooks = r.lrange("test:hooks", 0, -1)
        assert any(h.startswith(f"success:{pid}:") for h in hooks), hooks  # on_success in the child
        failure = next(h for h in hooks if h.startswith("failure:"))
        assert failure.endswith(":KeyError:True") and int(failure.split(":")[1]) in children
    finally:
        app.close()
        r.close()
    assert w.stop() == 0


def test_worker_without_tasks_warns_and_names_the_fix(run) -> None:  # type: ignore[no-untyped-def]
    w = run("worker", "-A", "celery_worker", "-Q", "api-scraper")
    w.wait_for("no task is registered")
    assert "-I proj.tasks" in w.log and "autodiscover_tasks" in w.log
    assert w.stop() == 0


def test_pidfile_logfile_and_beat_flag(run, project: Path) -> None:  # type: ignore[no-untyped-def]
    pidfile, logfile = project / "w.pid", project / "w.log"
    w = run(
        *shlex.split(
            f"worker -A celery_worker.celery -Q api-scraper -I tasks.api_scraper -P solo -E -O fair "
            f"--pidfile {pidfile} --logfile {logfile} --prefetch-multiplier 4 -n w1@%h"
        )
    )
    deadline = time.monotonic() + 30
    while "consuming" not in (logfile.read_text() if logfile.exists() else ""):
        assert time.monotonic() < deadline and w.proc.poll() is None, w.log
        time.sleep(0.05)
    assert int(pidfile.read_text()) == w.proc.pid
    second = run(*shlex.split(f"worker -A celery_worker.celery --pidfile {pidfile}"))
    assert second.proc.wait(timeout=30) == 1
    assert f"names process {w.proc.pid}, which is running" in second.log
    assert w.stop() == 0
    assert not pidfile.exists()
    text = logfile.read_text()
    assert "-P solo: the threads pool with one slot" in text
    assert "(pool=threads, concurrency=1" in text
    assert "-E/--task-events:" in text and "-O fair:" in text
    assert "worker_prefetch_multiplier=4" in text


def test_purge_without_a_queue_purges_the_default_one(project: Path, redis_url: str) -> None:
    app = producer(redis_url)
    env = {**os.environ, "TEST_REDIS_URL": redis_url, "CELERIAC_TASK_DEFAULT_QUEUE": "purge-default"}

    def purge(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "celeriac.cli", "-A", "celery_worker", "purge", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    try:
        for _ in range(3):
            app.send_task("scrape.echo", queue="purge-default")
        app.send_task("scrape.echo", queue="purge-other")
        assert "purged 3 message(s) from queue 'purge-default'" in purge("-f")
        assert app.broker.stats("purge-default").ready == 0
        assert app.broker.stats("purge-other").ready == 1
        assert "purged 1 message(s) from queue 'purge-other'" in purge("-Q", "purge-other", "--force")
    finally:
        app.close()
