"""Celery's pytest fixtures under Celery's names (``celery.contrib.pytest``), on celeriac.

Registered as a pytest plugin when celeriac is installed (the ``pytest11`` entry point named
``celeriac.contrib.pytest``, so a ported ``conftest.py`` keeping
``pytest_plugins = ("celeriac.contrib.pytest",)`` still works). A Celery project's tests run after
the import edit ``celery`` -> ``celeriac``::

    @pytest.fixture(scope="session")
    def celery_config():
        return {"broker_url": "redis://localhost:6379/0", "result_backend": "redis://localhost:6379/1"}

    def test_create_task(celery_app, celery_worker):
        @celery_app.task
        def mul(x, y):
            return x * y

        assert mul.delay(4, 4).get(timeout=10) == 16

The fixtures, with Celery's meaning:

* ``celery_config`` (session): settings of the test apps, Celery's names; default ``{}`` on top of
  :data:`TEST_DEFAULTS` (``memory://`` broker and results, results stored as in Celery).
* ``celery_parameters`` (session): keyword arguments of the test apps' constructor.
* ``celery_enable_logging`` (session): False; True logs the test workers' lines at INFO.
* ``use_celery_app_trap`` (session): False; True makes using ``current_app`` without an app made
  current fail ("Test depends on current_app").
* ``celery_app``: a fresh app per test (settings: ``celery_config``, then the test's
  ``@pytest.mark.celery(**settings)``), not made current (``depends_on_current_app`` does that).
* ``celery_worker``: a real worker (:func:`celeriac.contrib.testing.worker.start_worker`) consuming
  ``celery_app``'s queues in a thread, for the test.
* ``celery_session_app`` / ``celery_session_worker``: the same for the whole session; the session
  app is made current.
* ``celery_includes`` (session): task modules the workers import first (``()``).
* ``celery_worker_pool`` (session): ``"solo"``; ``"prefork"``, ``"threads"``, ``"asyncio"`` too.
* ``celery_worker_parameters`` (session): more ``start_worker`` options (``queues``, ...).

With the environment variable ``NO_WORKER`` set, the worker fixtures start no worker (as Celery's).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from .. import _registry
from ..app import Celeriac
from ..exceptions import CeleriacError
from .testing.worker import TestWorkController, start_worker

__all__ = [
    "TEST_DEFAULTS",
    "celery_app",
    "celery_config",
    "celery_enable_logging",
    "celery_includes",
    "celery_parameters",
    "celery_session_app",
    "celery_session_worker",
    "celery_worker",
    "celery_worker_parameters",
    "celery_worker_pool",
    "depends_on_current_app",
    "use_celery_app_trap",
]

#: settings under ``celery_config``, as Celery's test app has them: in-process broker and results,
#: results stored (Celery's default; celeriac's own default stores none)
TEST_DEFAULTS: Mapping[str, Any] = {
    "broker_url": "memory://",
    "result_backend": "memory://",
    "task_ignore_result": False,
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "celery(**overrides): override celery configuration for a test case")


class _Trap:
    """The current app while ``use_celery_app_trap`` holds: any use fails, naming the cause."""

    def __getattr__(self, name: str) -> Any:
        raise CeleriacError(
            f"Test depends on current_app (current_app.{name}): use the celery_app fixture's app, "
            "or the depends_on_current_app fixture"
        )


@contextmanager
def _current(app: Any) -> Iterator[None]:
    """Make ``app`` (or a trap) current for the block; the previous current app after."""
    before = list(_registry.current)
    if app is not None:
        _registry.set_current(app)
    try:
        yield
    finally:
        _registry.current[:] = before


@contextmanager
def _create_app(
    request: pytest.FixtureRequest,
    config: Mapping[str, Any],
    parameters: Mapping[str, Any],
    use_trap: bool,
    make_current: bool,
) -> Iterator[Celeriac]:
    mark = request.node.get_closest_marker("celery")
    settings = {**TEST_DEFAULTS, **config, **(mark.kwargs if mark else {})}
    params = dict(parameters)
    main = params.pop("main", "celery.tests")
    app = Celeriac(main, from_env=False, set_as_current=False, **params)
    trap = _Trap() if use_trap else None
    try:
        app.conf.update(settings)
        with _current(trap if use_trap else (app if make_current else None)):
            yield app
    finally:
        app.close()
        del trap


@pytest.fixture(scope="session")
def use_celery_app_trap() -> bool:
    """Return True to make a test that uses ``current_app`` without making an app current fail."""
    return False


@pytest.fixture(scope="session")
def celery_config() -> Mapping[str, Any]:
    """Redefine to configure the test apps (Celery's setting names), e.g. a real Redis::

    @pytest.fixture(scope="session")
    def celery_config():
        return {"broker_url": "redis://localhost:6379/0", "result_backend": "redis://localhost:6379/1"}
    """
    return {}


@pytest.fixture(scope="session")
def celery_parameters() -> Mapping[str, Any]:
    """Redefine to pass keyword arguments to the test apps' constructor (``Celeriac(**...)``)."""
    return {}


@pytest.fixture(scope="session")
def celery_enable_logging() -> bool:
    """Return True to have the test workers log at INFO (default: errors only)."""
    return False


@pytest.fixture(scope="session")
def celery_includes() -> Sequence[str]:
    """Redefine to name modules the test workers import first (task modules, signal handlers)."""
    return ()


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    """The test workers' pool: ``"solo"`` (Celery's default), ``"prefork"``, ``"threads"``, ``"asyncio"``."""
    return "solo"


@pytest.fixture(scope="session")
def celery_worker_parameters() -> Mapping[str, Any]:
    """Redefine to pass more options to :func:`~celeriac.contrib.testing.worker.start_worker`
    (``queues``, ``exclude_queues``, ``hostname``, ``shutdown_timeout``, ...)."""
    return {}


@pytest.fixture(scope="session")
def celery_session_app(
    request: pytest.FixtureRequest,
    celery_config: Mapping[str, Any],
    celery_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
    use_celery_app_trap: bool,
) -> Iterator[Celeriac]:
    """An app for the whole session, made current (unless ``use_celery_app_trap``)."""
    with _create_app(
        request, celery_config, celery_parameters, use_celery_app_trap, make_current=True
    ) as app:
        yield app


@pytest.fixture
def celery_app(
    request: pytest.FixtureRequest,
    celery_config: Mapping[str, Any],
    celery_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
    use_celery_app_trap: bool,
) -> Iterator[Celeriac]:
    """A fresh app for the test: ``celery_config`` and the test's ``@pytest.mark.celery(**settings)``;
    not made current (as in Celery: ``depends_on_current_app`` does that)."""
    with _create_app(
        request, celery_config, celery_parameters, use_celery_app_trap, make_current=False
    ) as app:
        yield app


def _worker(
    app: Celeriac,
    includes: Sequence[str],
    pool: str,
    parameters: Mapping[str, Any],
    enable_logging: bool,
) -> Iterator[TestWorkController | None]:
    if os.environ.get("NO_WORKER"):
        yield None
        return
    options = dict(parameters)
    options["include"] = [*includes, *options.get("include", ())]
    if enable_logging:
        options.setdefault("loglevel", "INFO")
    with start_worker(app, pool=pool, **options) as worker:
        yield worker


@pytest.fixture(scope="session")
def celery_session_worker(
    celery_session_app: Celeriac,
    celery_includes: Sequence[str],
    celery_worker_pool: str,
    celery_worker_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
) -> Iterator[TestWorkController | None]:
    """A real worker for ``celery_session_app``, for the whole session."""
    yield from _worker(
        celery_session_app,
        celery_includes,
        celery_worker_pool,
        celery_worker_parameters,
        celery_enable_logging,
    )


@pytest.fixture
def celery_worker(
    celery_app: Celeriac,
    celery_includes: Sequence[str],
    celery_worker_pool: str,
    celery_worker_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
) -> Iterator[TestWorkController | None]:
    """A real worker consuming ``celery_app``'s queues on its broker, for the test."""
    yield from _worker(
        celery_app, celery_includes, celery_worker_pool, celery_worker_parameters, celery_enable_logging
    )


@pytest.fixture
def depends_on_current_app(celery_app: Celeriac) -> Iterator[None]:
    """Make ``celery_app`` the current app for the test (``current_app``, ``@shared_task`` calls)."""
    with _current(celery_app):
        yield
