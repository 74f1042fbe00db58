"""The process pool's fork server is a fresh interpreter that imports the app, not the worker: its
children hold neither the worker's loop nor redis-py unless the tasks import them. When the app cannot
be imported again by name, the server is forked from the worker as before, and tasks run the same."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from celeriac import Celeriac

from .conftest import REPO

pytestmark = pytest.mark.redis


def test_children_do_not_hold_the_worker(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "processes", "-c", "1", "-l", "debug")
    assert producer.send_task("itest.loaded", args=("celeriac.app",)).get(timeout=15) is True
    for module in ("celeriac.worker.worker", "celeriac.broker.redis", "click"):
        assert producer.send_task("itest.loaded", args=(module,)).get(timeout=15) is False, module
    assert "forking the process pool's server from the worker" not in w.log
    assert producer.send_task("itest.apid").get(timeout=15) != w.proc.pid  # async tasks still run


SCRIPT = """
import logging, os, sys
from celeriac import Celeriac, Worker

logging.basicConfig(level=logging.INFO)
app = Celeriac("lean")

@app.task(ignore_result=False)
def pid():
    return os.getpid()

if sys.argv[1] == "late":  # registered when the script runs, not when a module is imported
    import lean_tasks
    lean_tasks.register(app)
worker = Worker(app, pool="processes", concurrency=1, burst=True)
worker.start()
print(worker.stats.succeeded)
"""

LATE = """
import os

def register(app):
    @app.task(name="lean.late", ignore_result=False)
    def late():
        return os.getpid()
    return late
"""


@pytest.mark.parametrize("case", ["main", "late"])
def test_an_app_that_cannot_be_imported_again_forks_its_server(
    redis_url: str, tmp_path: Any, case: str
) -> None:
    (tmp_path / "lean_tasks.py").write_text(LATE)
    producer = Celeriac("producer", broker=redis_url)
    name = "lean.late" if case == "late" else "lean.pid"  # tasks of __main__ take the app's name
    results = [producer.send_task(name) for _ in range(3)]
    env = {
        **os.environ,
        "CELERIAC_BROKER_URL": redis_url,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO / 'src'}",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, case],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"
    assert "forked from the worker" in done.stderr or "forking the process pool's server" in done.stderr
    assert len({r.get(timeout=5) for r in results}) == 1  # one child ran them all
    producer.close()
