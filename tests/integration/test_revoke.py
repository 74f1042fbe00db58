"""Revoke on a real redis-server: queued, delayed, before any worker, on workers started later,
terminate per pool, the CLI, bounds, and what a worker pays per task."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from celeriac import Celeriac, TaskRevokedError, TaskState
from celeriac._redis.keys import KeySchema
from celeriac.broker.redis import RedisBroker
from celeriac.control import signal_name

pytestmark = pytest.mark.redis


@pytest.fixture
def app(redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("rv", broker=redis_url, lease_s=2.0)
    yield app
    app.close()


def _tasks(app: Celeriac, ran: list[Any]) -> Any:
    @app.task(ignore_result=False, name="rv.add")
    def add(x: int, y: int) -> int:
        ran.append((x, y))
        return x + y

    return add


def test_revoked_before_any_worker_never_runs(app: Celeriac, thread_worker: Any) -> None:
    ran: list[Any] = []
    add = _tasks(app, ran)
    doomed = add.delay(1, 1)
    kept = add.delay(2, 2)
    doomed.revoke()
    # REVOKED is stored at once, before any worker saw the task
    assert app.AsyncResult(doomed.id).state == TaskState.REVOKED
    thread_worker(app)
    assert kept.get(timeout=10) == 4
    with pytest.raises(TaskRevokedError):
        app.AsyncResult(doomed.id).get(timeout=10)
    assert ran == [(2, 2)]


def test_revoked_while_delayed_never_runs_and_reaches_a_worker_started_later(
    app: Celeriac, thread_worker: Any
) -> None:
    ran: list[Any] = []
    add = _tasks(app, ran)
    first = thread_worker(app)
    delayed = add.apply_async((3, 3), countdown=0.5)
    app.control.revoke(delayed.id)
    first.stop()
    later = thread_worker(app)  # started after the revoke: loads it from the stream
    marker = add.apply_async((4, 4), countdown=0.6)
    assert marker.get(timeout=10) == 8
    later.wait_outcomes(lambda out: any(o.task_id == delayed.id for o in out))
    with pytest.raises(TaskRevokedError):
        delayed.get(timeout=5)
    assert (3, 3) not in ran


def test_revoke_many_and_the_worker_outcome_is_revoked(app: Celeriac, thread_worker: Any) -> None:
    ran: list[Any] = []
    add = _tasks(app, ran)
    results = [add.delay(i, i) for i in range(20)]
    app.control.revoke([r.id for r in results[::2]])
    worker = thread_worker(app)
    worker.wait_outcomes(lambda out: len(out) >= 20)
    states = {o.task_id: o.state for o in worker.outcomes}
    for i, r in enumerate(results):
        assert states[r.id] == (TaskState.REVOKED if i % 2 == 0 else TaskState.SUCCESS)
    assert sorted(ran) == [(i, i) for i in range(1, 20, 2)]


def test_revoke_after_success_keeps_the_result(app: Celeriac, thread_worker: Any) -> None:
    add = _tasks(app, [])
    thread_worker(app)
    r = add.delay(5, 5)
    assert r.get(timeout=10) == 10
    r.revoke()
    assert app.AsyncResult(r.id).get(timeout=1) == 10


def test_revoked_unique_task_releases_its_lock(app: Celeriac, thread_worker: Any) -> None:
    @app.task(ignore_result=False, unique_for=60)
    def once(x: int) -> int:
        return x

    first = once.delay(1)
    first.revoke()
    worker = thread_worker(app)
    worker.wait_outcomes(lambda out: any(o.task_id == first.id for o in out))
    again = once.delay(1)
    assert again.id != first.id
    assert again.get(timeout=10) == 1


def test_revocations_are_bounded_and_expire(redis_url: str) -> None:
    app = Celeriac("rvb", broker=redis_url, revoked_max=100, revoke_expires_s=30)
    try:
        app.control.revoke([f"id-{i}" for i in range(5000)])
        r = redis.Redis.from_url(redis_url)
        key = KeySchema().revoked
        assert r.xlen(key) <= 100 + 200  # approximate MAXLEN trims whole stream nodes
        assert 0 < r.pttl(key) <= 30_000
        r.close()
    finally:
        app.close()


def test_a_worker_pays_one_pipelined_read_per_fetch_batch(app: Celeriac, r: redis.Redis) -> None:
    """The revocation check costs no command per task: the fetch batch reads the stream once."""
    ran: list[Any] = []
    add = _tasks(app, ran)
    for i in range(50):
        add.delay(i, i)
    app.control.revoke("some-other-task")
    broker = RedisBroker(redis_url_of(app))

    async def run() -> list[Any]:
        await broker.open(["default"])
        r.config_resetstat()
        got = await broker.fetch(["default"], "c1", 50, 0)
        await broker.close()
        return got

    got = asyncio.run(run())
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}
    assert len(got) == 50
    assert calls.get("xreadgroup") == 1 and calls.get("xread") == 1
    assert "some-other-task" in broker.revocations


def redis_url_of(app: Celeriac) -> str:
    return app.conf.broker_url


def test_revoke_lands_between_fetch_and_start(app: Celeriac) -> None:
    """The race, stated precisely: a revoke that reached Redis before the fetch took the message is
    seen by the read that follows the fetch in the same round trip."""
    add = _tasks(app, [])
    victim = add.delay(1, 2)
    broker = RedisBroker(app.conf.broker_url)

    async def run() -> bool:
        await broker.open(["default"])
        app.control.revoke(victim.id)  # after the worker's start-up sync, before its fetch
        got = await broker.fetch(["default"], "c1", 10, 0)
        assert [d.entry_id for d in got]
        await broker.close()
        return victim.id in broker.revocations

    assert asyncio.run(run())


@pytest.mark.parametrize("pool", ["asyncio", "threads", "processes", "processes-TERM"])
def test_terminate_stops_a_running_task(app: Celeriac, thread_worker: Any, pool: str, tmp_path: Any) -> None:
    """asyncio: cancelled; threads: TaskRevokedError raised in the thread; processes: the signal goes
    to that task's child only (SIGTERM, which children ignore, becomes SIGKILL after 1 s)."""
    flag = tmp_path / "finished"

    @app.task(ignore_result=False, name="rv.slow_sync")
    def slow_sync(path: str) -> str:
        for _ in range(60):  # Python bytecode between sleeps: an exception raised into the thread lands
            time.sleep(0.05)
        open(path, "w").close()
        return "done"

    @app.task(ignore_result=False, name="rv.slow_async")
    async def slow_async(path: str) -> str:
        await asyncio.sleep(10)
        open(path, "w").close()  # noqa: ASYNC230 - never reached when terminate works
        return "done"

    task = slow_async if pool == "asyncio" else slow_sync
    add = _tasks(app, [])
    worker = thread_worker(app, pool=pool.split("-")[0], concurrency=2)
    r = task.delay(str(flag))
    started = time.monotonic()
    while app.broker.stats("default").running == 0 and time.monotonic() - started < 10:
        time.sleep(0.02)
    time.sleep(0.3)  # running now
    r.revoke(terminate=True, signal="SIGKILL" if pool == "processes" else "SIGTERM")

    worker.wait_outcomes(lambda out: any(o.task_id == r.id for o in out), timeout_s=10)
    assert time.monotonic() - started < 2.5  # well before the task would end (3 s)
    with pytest.raises(TaskRevokedError):
        app.AsyncResult(r.id).get(timeout=5)
    time.sleep(3.5 - (time.monotonic() - started))
    assert not flag.exists()  # it really stopped: it did not run on in the background
    if pool.startswith("processes"):
        assert worker.worker.pool.lost == 0  # a terminated child is not a lost one (no redelivery)
    # the worker goes on with the next task
    assert add.delay(1, 1).get(timeout=10) == 2


def test_signal_names() -> None:
    assert signal_name("TERM") == "SIGTERM"
    assert signal_name("sigkill") == "SIGKILL"
    assert signal_name(9) == "SIGKILL"
    with pytest.raises(ValueError, match="unknown signal"):
        signal_name("NOPE")


def test_revoke_from_threads_and_get_waiters_wake(app: Celeriac) -> None:
    add = _tasks(app, [])
    r = add.delay(1, 1)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            app.AsyncResult(r.id).get(timeout=10)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.2)
    app.control.revoke(r.id)
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], TaskRevokedError)


def test_cli_revoke(redis_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a user types it, output piped (not a terminal), with Celery's spellings (-t, TERM)."""
    import subprocess
    import sys

    app = Celeriac("rvcli", broker=redis_url)
    ids = ["aaaa", "bbbb"]
    env = {"CELERIAC_BROKER_URL": redis_url, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "celeriac", "revoke", *ids, "--json"],
        capture_output=True,
        env=env,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == {"revoked": ids, "terminate": False, "signal": "SIGTERM"}
    out = subprocess.run(
        [sys.executable, "-m", "celeriac", "revoke", "-t", "--signal", "TERM", "cccc"],
        capture_output=True,
        env=env,
        text=True,
        check=True,
    )
    assert out.stdout.splitlines() == ["cccc"]  # piped: only the ids on stdout
    assert out.stderr.strip() == "revoked 1 task(s) (terminate with SIGTERM)"
    bad = subprocess.run(
        [sys.executable, "-m", "celeriac", "revoke", "--signal", "NOPE", "x"],
        capture_output=True,
        env=env,
        text=True,
    )
    assert bad.returncode == 2 and "unknown signal" in bad.stderr
    assert app.AsyncResult("cccc").state == TaskState.REVOKED
    celery_spelling = subprocess.run(
        [sys.executable, "-m", "celeriac", "control", "revoke", "--terminate", "dddd"],
        capture_output=True,
        env=env,
        text=True,
        check=True,
    )
    assert celery_spelling.stdout.splitlines()[-1] == "dddd"
    assert app.AsyncResult("dddd").state == TaskState.REVOKED
    app.close()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.mark.slow
def test_revoke_at_scale(redis_url: str, r: redis.Redis) -> None:
    """200k ids revoked in one call (a big GroupResult.revoke): bounded stream, every id marked,
    and a worker starting afterwards loads what is in force before its first task."""
    app = Celeriac("rvscale", broker=redis_url)
    ids = [f"scale-{i}" for i in range(200_000)]
    started = time.monotonic()
    app.control.revoke(ids)
    revoke_s = time.monotonic() - started
    key = KeySchema().revoked
    assert r.xlen(key) <= app.conf.revoked_max + 1000  # approximate MAXLEN: whole stream nodes
    assert app.AsyncResult(ids[-1]).state == TaskState.REVOKED
    assert app.AsyncResult(ids[0]).state == TaskState.REVOKED
    broker = RedisBroker(redis_url)

    async def load() -> int:
        await broker.open(["default"])
        n = len(broker.revocations)
        await broker.close()
        return n

    started = time.monotonic()
    loaded = asyncio.run(load())
    load_s = time.monotonic() - started
    assert app.conf.revoked_max <= loaded <= app.conf.revoked_max + 1000
    assert ids[-1] in broker.revocations and ids[0] not in broker.revocations  # oldest trimmed
    print(f"revoke of 200k ids: {revoke_s:.2f} s; a worker loads {loaded} in {load_s:.2f} s")
    app.close()
