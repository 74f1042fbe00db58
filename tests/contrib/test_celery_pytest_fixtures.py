"""Celery's pytest fixtures, used as a Celery project uses them: a test suite written as in Celery's
"Testing with Celery" guide, with only ``celery`` edited to ``celeriac`` in the import lines, run by
pytest in a subprocess (the plugin found through its ``pytest11`` entry point), on a real Redis and on
``memory://``, with a real worker in each case."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.redis

CONFTEST = """
import os

import pytest

pytest_plugins = ("celeriac.contrib.pytest",)  # kept from the Celery project: a no-op here


@pytest.fixture(scope="session")
def celery_config():
    return {
        "broker_url": os.environ["TEST_REDIS"],
        "result_backend": os.environ["TEST_REDIS"],
    }


@pytest.fixture(scope="session")
def celery_includes():
    return ["proj.tasks"]
"""

TASKS = """
from celeriac import shared_task


@shared_task
def add(x, y):
    return x + y
"""

# as in Celery's guide ("celery_app - Celery app used for testing", "celery_worker - Embed live worker")
TEST_GUIDE = """
import pytest
import redis

from celeriac.contrib.testing.worker import start_worker


def test_create_task(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    assert mul.delay(4, 4).get(timeout=10) == 16


def test_task_defined_after_start_with_reload(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    celery_worker.reload()
    assert mul.delay(4, 5).get(timeout=10) == 20


def test_the_worker_is_real_and_uses_the_configured_redis(celery_app, celery_worker):
    import os

    @celery_app.task
    def where():
        import threading

        return threading.current_thread().name

    assert celery_app.conf.broker_url == os.environ["TEST_REDIS"]
    assert where.delay().get(timeout=10) != "MainThread"
    # the messages went through Redis: the worker's heartbeat and the results are there
    assert redis.Redis.from_url(os.environ["TEST_REDIS"]).dbsize() > 0


@pytest.mark.celery(result_backend="memory://", broker_url="memory://")
def test_marker_overrides_the_config(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    assert celery_app.conf.broker_url == "memory://"
    assert mul.delay(2, 3).get(timeout=10) == 6


def test_includes_register_shared_tasks(celery_app, celery_worker):
    from proj.tasks import add

    assert "proj.tasks.add" in celery_app.tasks
    assert celery_app.tasks["proj.tasks.add"].delay(2, 2).get(timeout=10) == 4


def test_celery_app_is_not_current(celery_app):
    from celeriac import current_app

    assert not current_app  # as in Celery: the test app is not made current


def test_depends_on_current_app(celery_app, depends_on_current_app):
    from celeriac import current_app

    assert current_app.main == celery_app.main and current_app.conf is celery_app.conf


def test_start_worker_as_django_test_cases_use_it(celery_app):
    @celery_app.task
    def mul(x, y):
        return x * y

    worker = start_worker(celery_app, perform_ping_check=False)
    worker.__enter__()
    try:
        assert mul.delay(3, 3).get(timeout=10) == 9
    finally:
        worker.__exit__(None, None, None)


def test_start_worker_with_celery_arguments(celery_app):
    @celery_app.task(queue="high-prio")
    def mul(x, y):
        return x * y

    with start_worker(
        celery_app,
        pool="solo",
        concurrency=1,
        perform_ping_check=True,
        ping_task_timeout=10.0,
        shutdown_timeout=10.0,
        loglevel="INFO",
        queues=["high-prio"],  # the ping check goes to a queue the worker consumes
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    ) as worker:
        assert worker.queues == ["high-prio"]
        assert mul.delay(6, 7).get(timeout=10) == 42
"""

# the session worker runs until the session ends: alone in its run, as it would be beside
# celery_worker in a Celery suite too (both consume the same queue on the same broker)
TEST_SESSION = """
def test_session_worker(celery_session_app, celery_session_worker):
    from proj.tasks import add

    # the session app is current: the shared task sends through it
    assert add.delay(40, 2).get(timeout=10) == 42
"""

TEST_POOLS = """
import pytest


@pytest.fixture(scope="session")
def celery_worker_pool():
    return "prefork"


@pytest.fixture(scope="session")
def celery_worker_parameters():
    return {"concurrency": 2}


def test_prefork_pool_runs_tasks_in_child_processes(celery_app, celery_worker):
    import os

    @celery_app.task
    def pid():
        return os.getpid()

    # tasks defined before the worker forked its children; the ping check ran in a child already
    assert celery_worker.pool == "prefork"


def test_prefork_runs_in_children(celery_app):
    import os

    from celeriac.contrib.testing.worker import start_worker

    @celery_app.task
    def pid():
        return os.getpid()

    with start_worker(celery_app, pool="prefork", concurrency=2):
        assert pid.delay().get(timeout=20) != os.getpid()
"""

TEST_MEMORY = """
import pytest


@pytest.fixture(scope="session")
def celery_config():
    return {}  # Celery's defaults: in-memory broker and results


def test_memory_broker(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    assert celery_app.conf.broker_url == "memory://"
    assert mul.delay(4, 4).get(timeout=10) == 16


def test_eager_from_config(celery_app):
    celery_app.conf.update(task_always_eager=True)

    @celery_app.task
    def mul(x, y):
        return x * y

    assert mul.delay(5, 5).get(timeout=1) == 25
"""

TEST_TRAP = """
import pytest

from celeriac.exceptions import CeleriacError


@pytest.fixture(scope="session")
def use_celery_app_trap():
    return True


def test_trap(celery_app):
    from celeriac import current_app

    with pytest.raises(CeleriacError, match="Test depends on current_app"):
        current_app.conf
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "__init__.py").write_text("")
    (tmp_path / "proj" / "tasks.py").write_text(TASKS)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    return tmp_path


def _pytest(root: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "TEST_REDIS": redis_url, "PYTHONPATH": str(root)}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--strict-markers", "-p", "no:cacheprovider", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _passed(proc: subprocess.CompletedProcess[str], count: int) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{count} passed" in proc.stdout, proc.stdout


def test_celery_guide_suite_runs_on_real_redis(tmp_path: Path, redis_url: str) -> None:
    root = _project(tmp_path)
    (root / "test_guide.py").write_text(textwrap.dedent(TEST_GUIDE))
    _passed(_pytest(root, redis_url, "test_guide.py"), 9)


@pytest.mark.slow
def test_session_app_and_worker(tmp_path: Path, redis_url: str) -> None:
    root = _project(tmp_path)
    (root / "test_session.py").write_text(TEST_SESSION)
    _passed(_pytest(root, redis_url, "test_session.py"), 1)


@pytest.mark.slow
def test_default_config_is_celerys_in_memory_app(tmp_path: Path, redis_url: str) -> None:
    root = _project(tmp_path)
    (root / "test_memory.py").write_text(TEST_MEMORY)
    _passed(_pytest(root, redis_url, "test_memory.py"), 2)


@pytest.mark.slow
def test_prefork_pool(tmp_path: Path, redis_url: str) -> None:
    root = _project(tmp_path)
    (root / "test_pools.py").write_text(TEST_POOLS)
    _passed(_pytest(root, redis_url, "test_pools.py"), 2)


@pytest.mark.slow
def test_app_trap(tmp_path: Path, redis_url: str) -> None:
    root = _project(tmp_path)
    (root / "test_trap.py").write_text(TEST_TRAP)
    _passed(_pytest(root, redis_url, "test_trap.py"), 1)


def test_plugin_is_listed_and_marker_registered(tmp_path: Path, redis_url: str) -> None:
    proc = _pytest(tmp_path, redis_url, "--markers")
    assert "@pytest.mark.celery(**overrides)" in proc.stdout
    fixtures = _pytest(tmp_path, redis_url, "--fixtures")
    for name in (
        "celery_app",
        "celery_worker",
        "celery_session_app",
        "celery_session_worker",
        "celery_config",
        "celery_parameters",
        "celery_includes",
        "celery_worker_pool",
        "celery_worker_parameters",
        "celery_enable_logging",
        "use_celery_app_trap",
        "celeriac_memory_app",  # the older plugin still loads beside it
    ):
        assert f"{name}" in fixtures.stdout, name


@pytest.mark.slow
def test_no_worker_env_starts_no_worker(tmp_path: Path, redis_url: str) -> None:
    import os

    (tmp_path / "test_nw.py").write_text("def test_nw(celery_worker):\n    assert celery_worker is None\n")
    os.environ["NO_WORKER"] = "1"
    try:
        _passed(_pytest(tmp_path, redis_url, "test_nw.py"), 1)
    finally:
        del os.environ["NO_WORKER"]
