"""pytest fixtures for testing code that uses celeriac (the ``celeriac`` pytest11 entry point).

Installed with celeriac, so they are available in every test suite without imports:

* ``celeriac_settings``: settings for the apps below; override it in a ``conftest.py``.
* ``celeriac_memory_app``: a fresh app on ``memory://`` (broker and results), closed after the test.
* ``celeriac_memory_app_factory``: make more such apps, with extra settings.
* ``celeriac_drain``: run a real worker until the queues are empty, re-raising the first failure.
* ``celeriac_redis_server``: a private ``redis-server`` on a free port for the session (never 6379).

Example::

    def test_add(celeriac_memory_app, celeriac_drain):
        @celeriac_memory_app.task(ignore_result=False)
        def add(x, y):
            return x + y

        result = add.delay(1, 2)
        celeriac_drain()
        assert result.get(timeout=1) == 3
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from ..app import Celeriac
from .clock import FakeClock
from .drain import DEFAULT_TIMEOUT_S, DrainResult, drain
from .server import RedisServer, redis_server_binary


@pytest.fixture
def celeriac_settings() -> dict[str, Any]:
    """Settings (``Config`` names) applied to ``celeriac_memory_app``; override to change them::

    @pytest.fixture
    def celeriac_settings():
        return {"task_ignore_result": False, "max_deliveries": 2}
    """
    return {}


@pytest.fixture
def celeriac_memory_app_factory(celeriac_settings: dict[str, Any]) -> Iterator[Callable[..., Celeriac]]:
    """A factory of apps on ``memory://``: ``make(main="tests", *, clock=None, **settings) -> Celeriac``.

    Each app has its own broker and result store (nothing is shared between apps); a worker and
    producers in this process share them. Settings given to the factory win over ``celeriac_settings``.
    With ``clock`` (a :class:`~celeriac.testing.FakeClock`), due times, leases and result TTLs follow
    that clock, and moving it wakes the worker's scheduler: a one-hour countdown runs after
    ``clock.advance(3600)``, at once.
    """
    apps: list[Celeriac] = []

    def make(main: str | None = "tests", *, clock: FakeClock | None = None, **settings: Any) -> Celeriac:
        app = Celeriac(
            main,
            broker="memory://",
            result_backend="memory://",
            clock=clock,
            from_env=False,  # a CELERIAC_* variable in the developer's shell must not change tests
            **{**celeriac_settings, **settings},
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def celeriac_memory_app(celeriac_memory_app_factory: Callable[..., Celeriac]) -> Celeriac:
    """A fresh app on ``memory://`` with ``celeriac_settings``; register tasks on it in the test."""
    return celeriac_memory_app_factory()


@pytest.fixture
def celeriac_drain(request: pytest.FixtureRequest) -> Callable[..., DrainResult]:
    """``drain(app=None, queues=None, *, timeout_s=30, raise_first_failure=True) -> DrainResult``.

    Runs a burst worker in this process until the queues (default: every queue the app knows) are
    empty, and re-raises the first task failure. ``app`` defaults to ``celeriac_memory_app``. Works
    in sync and async tests. See :func:`celeriac.testing.drain`.
    """

    def run(
        app: Celeriac | None = None,
        queues: Sequence[str] | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        raise_first_failure: bool = True,
        **options: Any,
    ) -> DrainResult:
        target: Celeriac = app if app is not None else request.getfixturevalue("celeriac_memory_app")
        return drain(target, queues, timeout_s=timeout_s, raise_first_failure=raise_first_failure, **options)

    return run


@pytest.fixture(scope="session")
def celeriac_redis_server() -> Iterator[RedisServer]:
    """A private ``redis-server`` for the test session, on a free loopback port (``.url``).

    Skipped when ``redis-server`` is not installed, except under CI (``CI`` set), where that fails.
    Tests sharing it should use their own ``key_prefix`` or flush it.
    """
    if redis_server_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (apt-get install redis-server)")
        pytest.skip("redis-server not installed")
    with RedisServer() as server:
        yield server
