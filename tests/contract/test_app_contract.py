"""End to end through the app and a real Worker, identically on ``memory://`` and Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from celeriac import (
    Celeriac,
    NotRegistered,
    ResultsDisabled,
    TaskExpiredError,
    TaskState,
)
from celeriac.broker.base import Enqueue
from celeriac.message import Message, encode, new_task_id
from celeriac.testing import drain

# a countdown is measured on the broker's clock (Redis TIME, ms) and the test's on time.time()
_CLOCK_SLACK_S = 0.005


def test_delay_then_get_with_a_running_worker(app: Celeriac, running_worker: Callable[..., Any]) -> None:
    @app.task(ignore_result=False)
    def add(x: int, y: int) -> int:
        return x + y

    with running_worker(app):
        results = [add.delay(i, i) for i in range(10)]
        assert [r.get(timeout=10) for r in results] == [2 * i for i in range(10)]
        assert add.delay(2, 3).get(timeout=10) == 5

    assert app.broker.stats("default").running == 0


def test_retry_with_exponential_backoff_then_success(app: Celeriac) -> None:
    attempts: list[tuple[int, float]] = []

    @app.task(bind=True, ignore_result=False, max_retries=3, retry_backoff=0.05, retry_jitter=False)
    def flaky(self: Any) -> str:
        attempts.append((self.request.retries, time.time()))
        if len(attempts) < 3:
            raise self.retry(exc=ValueError("not yet"))
        return "done"

    result = flaky.delay()
    outcome = drain(app, timeout_s=20)

    assert result.get(timeout=1) == "done"
    assert [n for n, _ in attempts] == [0, 1, 2]
    gaps = [b - a for (_, a), (_, b) in zip(attempts, attempts[1:])]
    assert gaps[0] >= 0.05 - _CLOCK_SLACK_S  # 0.05 * 2**0
    assert gaps[1] >= 0.10 - _CLOCK_SLACK_S  # 0.05 * 2**1
    assert [o.kind for o in outcome.outcomes] == ["retry", "retry", "ack"]
    assert outcome.stats.retried == 2


def test_retries_exhausted_dead_letters_and_get_raises_the_task_error(app: Celeriac) -> None:
    calls: list[int] = []

    @app.task(autoretry_for=(KeyError,), max_retries=1, default_retry_delay=0.01)
    def always_fails() -> None:
        calls.append(1)
        raise KeyError("missing")

    result = always_fails.delay()
    drain(app, raise_first_failure=False, timeout_s=20)

    assert len(calls) == 2
    (dl,) = app.broker.dead_letters("default", 10)
    assert "max retries (1) exceeded" in dl.reason
    assert dl.task_id == result.id
    with pytest.raises(KeyError):
        app.AsyncResult(result.id).get(timeout=1)


def test_countdown_and_eta_run_no_earlier_than_asked(app: Celeriac) -> None:
    ran_at: dict[str, float] = {}

    @app.task
    def stamp(name: str) -> None:
        ran_at[name] = time.time()

    sent = time.time()
    stamp.apply_async(("countdown",), countdown=0.2)
    stamp.apply_async(("eta",), eta=sent + 0.1)
    stamp.delay("now")
    assert app.broker.stats("default").delayed == 2

    drain(app, timeout_s=20)

    assert set(ran_at) == {"now", "countdown", "eta"}
    assert ran_at["countdown"] - sent >= 0.2 - _CLOCK_SLACK_S
    assert ran_at["eta"] - sent >= 0.1 - _CLOCK_SLACK_S
    assert ran_at["now"] < ran_at["eta"] < ran_at["countdown"]
    assert app.broker.stats("default").delayed == 0


def test_unknown_task_is_dead_lettered_with_a_reason(app: Celeriac) -> None:
    result = app.send_task("no.such.task", (1, 2))

    outcome = drain(app, raise_first_failure=False)

    assert [o.kind for o in outcome.outcomes] == ["dead"]
    (dl,) = app.broker.dead_letters("default", 10)
    assert dl.reason.startswith("unknown task") and "no.such.task" in dl.reason
    assert dl.task_id == result.id
    with pytest.raises(NotRegistered):
        result.get(timeout=1)

    assert app.broker.replay_dead("default", 1) == 1
    with pytest.raises(NotRegistered):
        drain(app)  # the default: the first failure is raised in the test


def test_undecodable_message_is_dead_lettered(app: Celeriac) -> None:
    garbage = b"\xc1 this is not msgpack"
    app.broker.enqueue(Enqueue("default", garbage))

    outcome = drain(app, raise_first_failure=False)

    assert [o.kind for o in outcome.outcomes] == ["dead"]
    (dl,) = app.broker.dead_letters("default", 10)
    assert dl.reason.startswith("undecodable message")
    assert dl.data == garbage
    assert dl.task_id == ""
    stats = app.broker.stats("default")
    assert (stats.ready, stats.running, stats.dead) == (0, 0, 1)


def test_wrong_arguments_are_dead_lettered_and_get_raises_type_error(app: Celeriac) -> None:
    ran: list[int] = []

    @app.task
    def add(x: int, y: int) -> int:
        ran.append(1)
        return x + y

    # a producer with another version of the task: the worker's signature check is the one that counts
    task_id = new_task_id()
    app.broker.enqueue(Enqueue("default", encode(Message(task_id, add.name, (1, 2, 3)))))

    drain(app, raise_first_failure=False)

    assert ran == []
    (dl,) = app.broker.dead_letters("default", 10)
    assert dl.reason.startswith("wrong arguments")
    with pytest.raises(TypeError):
        app.AsyncResult(task_id).get(timeout=1)


def test_expired_task_never_runs_and_is_marked_expired(app: Celeriac) -> None:
    ran: list[str] = []

    @app.task
    def job(name: str) -> None:
        ran.append(name)

    # expires before its countdown is over: it must be discarded, unstarted
    late = job.apply_async(("late",), countdown=0.15, expires=0.05)
    stale = job.apply_async(("stale",), expires=datetime.now(timezone.utc) - timedelta(seconds=1))
    fresh = job.apply_async(("fresh",), expires=60)

    with pytest.raises(TaskExpiredError):
        drain(app)  # the first expired task is reported as a failure
    drain(app, raise_first_failure=False)

    assert ran == ["fresh"]
    for result in (late, stale):
        handle = app.AsyncResult(result.id)
        assert handle.state is TaskState.EXPIRED
        with pytest.raises(TaskExpiredError):
            handle.get(timeout=1)
    assert app.AsyncResult(fresh.id).state is TaskState.PENDING  # ignore_result by default
    assert app.broker.dead_letters("default", 10) == []  # expired is not an error of the message


def test_results_are_ignored_by_default_but_errors_are_kept(app: Celeriac) -> None:
    ran: list[int] = []

    @app.task
    def quiet(x: int) -> int:
        ran.append(x)
        return x

    @app.task
    def broken() -> None:
        raise RuntimeError("kept")

    ok = quiet.delay(7)
    bad = broken.delay()
    with pytest.raises(ResultsDisabled):
        ok.get(timeout=1)  # refused at once: the result will never be stored

    drain(app, raise_first_failure=False)

    assert ran == [7]
    backend = app.backend
    assert backend is not None
    assert backend.get(ok.id) is None
    assert app.AsyncResult(ok.id).state is TaskState.PENDING
    assert app.AsyncResult(bad.id).state is TaskState.FAILURE
    with pytest.raises(RuntimeError, match="kept"):
        app.AsyncResult(bad.id).get(timeout=1)


def test_drain_reraises_the_first_task_failure(app: Celeriac) -> None:
    @app.task
    def boom() -> None:
        raise ZeroDivisionError("first")

    boom.delay()
    with pytest.raises(ZeroDivisionError, match="first"):
        drain(app)


def test_a_worker_consumes_queues_in_priority_order(app_factory: Callable[..., Celeriac]) -> None:
    app = app_factory(task_routes={"*.urgent": "high"})
    order: list[str] = []
    lock = threading.Lock()

    @app.task(queue="low")
    def routine(n: int) -> None:
        with lock:
            order.append(f"low{n}")

    @app.task
    def urgent(n: int) -> None:
        with lock:
            order.append(f"high{n}")

    for n in range(3):
        routine.delay(n)
    for n in range(3):
        urgent.delay(n)

    drain(app, ["high", "low"], concurrency=1)

    assert order == ["high0", "high1", "high2", "low0", "low1", "low2"]
