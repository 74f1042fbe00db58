"""Celery's settings and names, honoured by a real worker on a real Redis: JSON content with Celery's
types, task_soft_time_limit and worker_concurrency from settings, task_routes in Celery's forms,
hooks and run signals around a worker's task, Ignore and Reject(requeue=True)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from celeriac import Celeriac, Task
from celeriac.exceptions import Ignore, Reject
from celeriac.signals import task_postrun

pytestmark = pytest.mark.redis


@pytest.fixture
def make(redis_url: str) -> Iterator[Any]:
    apps: list[Celeriac] = []

    def build(**settings: Any) -> Celeriac:
        app = Celeriac("compat", broker=redis_url, backend=redis_url, from_env=False, lease_s=2.0, **settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()


def test_json_content_round_trips_celerys_types_through_a_worker(make: Any, thread_worker: Any) -> None:
    app = make(task_serializer="application/json", accept_content=["json"], task_ignore_result=False)
    values = [
        dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc),
        dt.date(2026, 12, 3),
        uuid.uuid4(),
        Decimal("0.1"),
    ]

    @app.task(name="compat.echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return {"args": list(args), "kwargs": kwargs}

    thread_worker(app)
    assert echo.delay(*values, when=dt.timedelta(seconds=90)).get(timeout=10) == {
        "args": values,
        "kwargs": {"when": dt.timedelta(seconds=90)},
    }


def test_worker_defaults_from_celerys_settings(make: Any, thread_worker: Any) -> None:
    app = make(
        task_soft_time_limit=dt.timedelta(milliseconds=200),
        worker_concurrency=3,
        task_ignore_result=False,
        task_routes=[
            lambda name, args, kwargs, options, task=None, **kw: "compat-q" if name == "compat.nap" else None
        ],
    )

    @app.task(name="compat.nap")
    async def nap() -> str:
        try:
            await asyncio.sleep(10)
        except Exception as exc:
            return type(exc).__name__
        return "slept"

    w = thread_worker(app, queues=["compat-q"])
    assert w.worker.concurrency == 3
    assert nap.delay().get(timeout=10) == "SoftTimeLimitExceeded"


def test_hooks_signals_ignore_and_requeue_on_a_worker(make: Any, thread_worker: Any) -> None:
    app = make(task_ignore_result=False)
    calls: list[tuple[str, Any]] = []

    class Base(Task):  # type: ignore[type-arg]
        def on_success(self, retval: Any, task_id: Any, args: Any, kwargs: Any) -> None:
            calls.append(("on_success", retval))

    @app.task(name="compat.ok", base=Base)
    def ok(x: int) -> int:
        return x + 1

    @app.task(name="compat.ignore")
    def ignored() -> None:
        raise Ignore()

    attempts: list[int] = []

    @app.task(name="compat.requeue")
    def requeue() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise Reject("not yet", requeue=True)
        return "second time"

    def postrun(sender: Any = None, state: Any = None, **kw: Any) -> None:
        calls.append(("postrun", (sender.name, state)))

    task_postrun.connect(postrun)
    try:
        thread_worker(app)
        assert ok.delay(1).get(timeout=10) == 2
        assert requeue.delay().get(timeout=20) == "second time"
        result = ignored.delay()
        with pytest.raises(Exception):  # noqa: B017 - nothing is ever stored for an ignored task
            result.get(timeout=1)
        assert result.state == "PENDING"
    finally:
        task_postrun.disconnect(postrun)
    assert ("on_success", 2) in calls
    assert ("postrun", ("compat.ok", "SUCCESS")) in calls
    assert ("postrun", ("compat.ignore", "IGNORED")) in calls
    assert len(attempts) == 2
