"""The producer side and eager mode, with no Redis (eager mode never touches the broker)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from celeriac import (
    Celeriac,
    MessageTooLarge,
    NotRegistered,
    ResultsDisabled,
    SerializationError,
    TaskExpiredError,
    TaskState,
)
from celeriac.message import decode, encode
from celeriac.task import normalize_options


@pytest.fixture
def app() -> Celeriac:
    return Celeriac("t", broker="memory://", result_backend="memory://", task_always_eager=True)


def test_task_names_follow_module_and_function(app: Celeriac) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    assert add.name == f"{__name__}.test_task_names_follow_module_and_function.<locals>.add"
    assert add(2, 3) == 5  # calling the task runs it here, as in Celery

    @app.task(name="custom.name")
    def other() -> None: ...

    assert app.tasks["custom.name"] is other


def test_two_functions_cannot_share_a_name(app: Celeriac) -> None:
    app.task(name="dup")(lambda: 1)
    with pytest.raises(Exception, match="dup"):
        app.task(name="dup")(lambda: 2)


def test_wrong_arguments_fail_at_send_not_in_the_worker() -> None:
    app = Celeriac("t", broker="redis://127.0.0.1:1/0")  # never contacted: the check comes first

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError, match="add"):
        add.delay(1)
    with pytest.raises(TypeError):
        add.apply_async((1, 2), {"z": 3})


def test_bound_task_signature_check_skips_self() -> None:
    app = Celeriac("t", broker="redis://127.0.0.1:1/0")

    @app.task(bind=True)
    def job(self: Any, x: int) -> int:
        return x

    with pytest.raises(TypeError):
        job.delay()
    with pytest.raises(TypeError):
        job.delay(1, 2)


def test_oversized_message_is_refused_at_send() -> None:
    app = Celeriac("t", broker="redis://127.0.0.1:1/0", max_message_bytes=1000)

    @app.task
    def echo(s: str) -> str:
        return s

    with pytest.raises(MessageTooLarge, match="max_message_bytes=1000"):
        echo.delay("x" * 2000)


def test_non_serializable_argument_fails_at_send_even_in_eager_mode(app: Celeriac) -> None:
    @app.task
    def echo(x: Any) -> Any:
        return x

    with pytest.raises(SerializationError):
        echo.delay(object())


def test_eager_mode_round_trips_arguments(app: Celeriac) -> None:
    seen: list[Any] = []

    @app.task(ignore_result=False)
    def echo(x: Any) -> Any:
        seen.append(x)
        return x

    result = echo.delay((1, 2))
    assert result.get() == [1, 2]  # a tuple arrives as a list, exactly as through Redis
    assert seen == [[1, 2]]
    assert result.state is TaskState.SUCCESS and result.successful() and result.ready()


def test_eager_async_task(app: Celeriac) -> None:
    @app.task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert double.delay(21).get() == 42


def test_eager_retry_runs_again_until_success(app: Celeriac) -> None:
    @app.task(bind=True, max_retries=3)
    def flaky(self: Any) -> int:
        if self.request.retries < 2:
            raise self.retry(exc=OSError("down"), countdown=60)
        return self.request.retries

    assert flaky.delay().get() == 2


def test_eager_failure_reraises_the_task_error_type(app: Celeriac) -> None:
    @app.task
    def boom() -> None:
        raise KeyError("missing")

    result = boom.delay()
    assert result.failed()
    with pytest.raises(KeyError):
        result.get()
    assert isinstance(result.result, KeyError)
    assert result.traceback and "boom" in result.traceback


def test_autoretry_with_exhausted_retries_fails_with_the_cause(app: Celeriac) -> None:
    calls: list[int] = []

    @app.task(autoretry_for=(OSError,), max_retries=2, retry_backoff=True)
    def always_down() -> None:
        calls.append(1)
        raise OSError("still down")

    with pytest.raises(OSError, match="still down"):
        always_down.delay().get()
    assert len(calls) == 3  # first run + 2 retries


def test_eager_propagates_when_asked() -> None:
    app = Celeriac("t", broker="memory://", task_always_eager=True, task_eager_propagates=True)

    @app.task
    def boom() -> None:
        raise ValueError("x")

    with pytest.raises(ValueError):
        boom.delay()


def test_expired_task_never_runs(app: Celeriac) -> None:
    ran: list[int] = []

    @app.task
    def job() -> None:
        ran.append(1)

    message = job.build_message((), {}, normalize_options(expires=-1.0))
    result = app.run_eager(message)
    assert result.state is TaskState.EXPIRED
    with pytest.raises(TaskExpiredError):
        result.get()
    assert ran == []


def test_send_task_by_unknown_name_fails_clearly_in_eager_mode(app: Celeriac) -> None:
    result = app.send_task("not.there", args=(1,))
    with pytest.raises(NotRegistered):
        result.get()


def test_ignored_result_refuses_to_wait() -> None:
    app = Celeriac("t", broker="memory://", result_backend="memory://")

    @app.task
    def job() -> None: ...

    with pytest.raises(ResultsDisabled, match="ignore_result"):
        app.AsyncResult("x").__class__("x", app, ignored=True).get(timeout=0.01)


def test_routing_order() -> None:
    app = Celeriac(
        "t",
        broker="memory://",
        task_routes={"shop.reports.daily": "reports-hi", "shop.reports.*": "reports", "*.email": "mail"},
    )

    @app.task(name="shop.io", queue="io")
    def io() -> None: ...

    assert app.route("shop.reports.daily") == "reports-hi"
    assert app.route("shop.reports.weekly") == "reports"
    assert app.route("x.email") == "mail"
    assert app.route("shop.io", io) == "io"
    assert app.route("shop.io", io, queue="override") == "override"
    assert app.route("anything") == "default"


def test_countdown_and_eta_are_exclusive() -> None:
    with pytest.raises(ValueError):
        normalize_options(countdown=1, eta=1.0)
    with pytest.raises(ValueError):
        normalize_options(countdown=-1)


def test_message_round_trip_through_app_prepare(app: Celeriac) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    message = add.build_message((1, 2), {}, normalize_options())
    assert decode(encode(message)) == message


def test_send_many_checks_every_signature_before_sending_any() -> None:
    from celeriac.testing import drain

    app = Celeriac("t", broker="memory://", result_backend="memory://", max_message_bytes=200)

    @app.task(ignore_result=False)
    def add(x: int, y: int) -> int:
        return x + y

    def queued() -> int:
        return app.broker.stats(app.conf.task_default_queue).ready

    with pytest.raises(TypeError, match="add"):
        app.send_many([add.s(1, 2), add.s(1)])
    with pytest.raises(MessageTooLarge):
        app.send_many([add.s(1, 2), add.s("x" * 500, 1)])
    with pytest.raises(SerializationError):
        app.send_many([add.s(1, 2), add.s(object(), 1)])
    assert queued() == 0
    results = app.send_many([add.s(1, 2), add.s(x=3, y=4), add.s(5, 6).set(expires=3600)])
    assert queued() == 3 and len({r.id for r in results}) == 3
    drain(app)
    assert [r.get(timeout=1) for r in results] == [3, 7, 11]
    app.send_many([add.s(1, 2), add.s(5, 6).set(countdown=60)])
    assert queued() == 1  # the second waits for its countdown
