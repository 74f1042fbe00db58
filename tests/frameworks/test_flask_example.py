"""The Flask example (examples/flask_app): views send, a real worker process runs the tasks inside the
Flask app's context (thread and process pools), and eager mode does too."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from .conftest import EXAMPLES, WorkerProcess

pytestmark = pytest.mark.redis

EXAMPLE = EXAMPLES / "flask_app"


@pytest.fixture
def package(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    # imported once for the session, as a process would (create_app reads REDIS_URL when called)
    return importlib.import_module("flask_example")


def _result(client: Any, result_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = client.get(f"/result/{result_id}").get_json()
        if body["ready"] or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


@pytest.mark.parametrize("pool", ["threads", pytest.param("prefork", marks=pytest.mark.slow)])
def test_views_and_a_real_worker(
    package: ModuleType, redis_url: str, pool: str, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    app = package.create_app()
    start_worker_process(
        EXAMPLE,
        {"REDIS_URL": redis_url, "PYTHONDONTWRITEBYTECODE": "1"},
        "-A",
        "make_celery",
        "-P",
        pool,
        "-c",
        "2",
    )
    client = app.test_client()
    added = client.post("/add", data={"a": 2, "b": 3}).get_json()
    assert _result(client, added["result_id"]) == {"ready": True, "successful": True, "value": 5}
    for name in ("ada", "grace", "linus"):
        greeted = _result(client, client.post("/greet", data={"name": name}).get_json()["result_id"])
        value = greeted["value"]
        assert value["text"] == f"Hello, {name}" and value["app"] == "flask_example"
        assert value["seen_before"] is None  # each task had a fresh app context


def test_eager_mode_runs_in_the_app_context(package: ModuleType) -> None:
    app = package.create_app()
    celery = app.extensions["celery"]
    celery.conf.update(task_always_eager=True)
    from flask_example import tasks

    assert tasks.greet.delay("eager").get(timeout=1)["text"] == "Hello, eager"


def test_a_task_outside_flask_has_no_context(redis_url: str) -> None:
    """Without celery_init_app, Flask's current_app is unusable in a task: the helper is what works."""
    from flask import Flask, current_app

    from celeriac import Celeriac
    from celeriac.contrib.flask import celery_init_app

    plain = Celeriac("plain", broker="memory://", from_env=False, task_always_eager=True)

    @plain.task
    def name() -> str:
        return str(current_app.name)

    with pytest.raises(RuntimeError, match="application context"):
        name.delay().get(timeout=1)
    celery_init_app(Flask("bound"), plain)
    assert name.delay().get(timeout=1) == "bound"
    plain.close()
