"""Dependencies point down: what each side of the system imports, checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from celeriac import Celeriac, TaskState
from celeriac.testing import DrainResult, FakeClock


def _modules_after(code: str) -> list[str]:
    """The ``celeriac*`` and ``redis*`` modules loaded after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + textwrap.dedent(
        """
        import json, sys
        print(json.dumps(sorted(m for m in sys.modules if m.startswith(("celeriac", "redis")))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.redis
def test_a_producer_loads_no_worker_code(redis_url: str) -> None:
    loaded = _modules_after(
        f"""
        from celeriac import Celeriac
        app = Celeriac("prod", broker={redis_url!r})

        @app.task
        def add(x: int, y: int) -> int:
            return x + y

        add.delay(1, 2)
        add.apply_async((1, 2), countdown=5, expires=60)
        app.send_task("elsewhere.task", (1,), countdown=1)
        app.send_many([add.s(i, i) for i in range(10)] + [add.s(1, 1).set(countdown=2)])
        app.AsyncResult("some-id")
        """
    )
    assert "celeriac.broker.redis" in loaded  # it did send through Redis
    assert [m for m in loaded if m.startswith("celeriac.worker")] == []
    # nor eager mode nor the result store: AsyncResult opens it only when asked for a result
    assert [m for m in loaded if m in ("celeriac.eager", "celeriac.results.redis")] == []


def test_broker_and_result_store_do_not_import_each_other() -> None:
    broker = _modules_after("import celeriac.broker.redis, celeriac.broker.memory")
    assert [m for m in broker if m.startswith("celeriac.results")] == []
    results = _modules_after("import celeriac.results.redis, celeriac.results.memory")
    assert [m for m in results if m.startswith("celeriac.broker")] == []
    codec = _modules_after("import celeriac.codec")
    assert [m for m in codec if m.startswith(("celeriac.results", "celeriac.broker", "redis"))] == []


def test_the_apps_clock_reaches_countdown_expires_and_expiry(
    celeriac_memory_app_factory: Callable[..., Celeriac], celeriac_drain: Callable[..., DrainResult]
) -> None:
    clock = FakeClock()
    app = celeriac_memory_app_factory(clock=clock, task_ignore_result=False)

    @app.task
    def ping() -> str:
        return "pong"

    kept = ping.apply_async(countdown=3600, expires=7200)
    late = ping.apply_async(countdown=3600, expires=60)  # due after it expires: must not run
    eager = ping.apply_async(eta=clock.time() + 10)
    clock.advance(3601)
    result = celeriac_drain(app, raise_first_failure=False)
    assert kept.get(timeout=1) == "pong" and eager.get(timeout=1) == "pong"
    assert late.state == TaskState.EXPIRED
    assert len(result.outcomes) == 3


def test_canvas_loads_with_the_first_signature() -> None:
    """An app and its tasks do not load canvas (an idle worker never builds a signature); the first
    ``s()`` does, and a task-less signature built after it still finds the app created last."""
    loaded = _modules_after(
        """
        import sys
        from celeriac import Celeriac
        app = Celeriac("lazy", broker="memory://", task_always_eager=True, task_ignore_result=False)

        @app.task
        def add(x: int, y: int) -> int:
            return x + y

        before = "celeriac.canvas" in sys.modules
        sig = add.s(1, 2)
        assert not before and type(sig).__name__ == "Signature", (before, sig)
        assert add.si(1, 2).immutable and add.signature((1, 2), countdown=1).options == {"countdown": 1}
        assert add.map([(1, 2)]).name == "celeriac.map"
        from celeriac import group
        assert group([]).delay().get() == []  # no task in it: sent through the app created last
        """
    )
    assert "celeriac.canvas" in loaded


def test_a_worker_loads_the_redis_broker_before_redis_py() -> None:
    """Compiling broker.redis (the largest module) before redis-py and the worker's other modules load
    lets them reuse the memory the compilation frees (idle RSS: benchmarks/README.md)."""
    script = """
        import json, sys
        started = []
        sys.addaudithook(lambda event, args: started.append(args[0]) if event == "import" else None)
        import celeriac.worker.worker
        print(json.dumps([m for m in started if m == "celeriac.broker.redis" or m.split(".")[0] == "redis"]))
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    order = json.loads(out.stdout.strip().splitlines()[-1])
    assert order[0] == "celeriac.broker.redis", order[:3]


def test_celery_settings_load_for_celerys_names_only() -> None:
    """celeriac's own names (and their Celery spellings of values) are set without the table of
    Celery's settings; the first Celery-only name loads it."""
    loaded = _modules_after(
        """
        import datetime, sys
        from celeriac import Celeriac
        app = Celeriac(
            "conf", broker="redis://127.0.0.1:1/0", accept_content=["application/json"], task_time_limit=5
        )
        assert app.broker.transport_options == {} and app.backend is not None  # built, not connected
        app.conf.task_soft_time_limit = datetime.timedelta(seconds=3)
        app.conf.worker_prefetch_multiplier = 4
        assert app.conf.accept_content == ("msgpack", "json"), app.conf.accept_content
        assert app.conf.task_soft_time_limit == 3.0 and app.conf["task_time_limit"] == 5.0
        assert "celeriac.celery_settings" not in sys.modules
        app.conf.CELERYD_TIME_LIMIT = 7  # Celery's old name
        assert app.conf.task_time_limit == 7.0
        app.conf.result_expires = 60  # a Celery-only name
        assert app.conf.result_expires_s == 60, app.conf.result_expires_s
        """
    )
    assert "celeriac.celery_settings" in loaded
