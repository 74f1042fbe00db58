"""Lean workers: a worker imports the app and only the task modules it is told to (``-I``, or
``worker_queue_modules`` for its queues); a task it does not have is dead-lettered with a clear reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from celeriac import Celeriac

pytestmark = pytest.mark.redis

APP = """
from celeriac import Celeriac
app = Celeriac("lean")   # imports no task module: workers choose
"""
SCRAPE = """
import sys
from leanapp import app

@app.task(name="lean.scrape", ignore_result=False)
def scrape(url):
    return {"url": url, "reports_loaded": "leanreports" in sys.modules}
"""
REPORTS = """
from leanapp import app

@app.task(name="lean.report", ignore_result=False)
def report():
    return "report"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name, source in (("leanapp", APP), ("leanscrape", SCRAPE), ("leanreports", REPORTS)):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return tmp_path


def burst(project: Path, redis_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "worker", "-A", "leanapp:app", "--burst", *args],
        cwd=project,
        env={**os.environ, "CELERIAC_BROKER_URL": redis_url, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_include_imports_only_the_named_modules(project: Path, redis_url: str, producer: Celeriac) -> None:
    ok = producer.send_task("lean.scrape", args=("https://x",))
    other = producer.send_task("lean.report")
    proc = burst(project, redis_url, "-I", "leanscrape")
    assert proc.returncode == 0, proc.stderr
    assert ok.get(timeout=5) == {"url": "https://x", "reports_loaded": False}
    assert "task modules: leanscrape (1 tasks registered)" in proc.stderr
    (dead,) = producer.broker.dead_letters("default", 10)
    assert dead.task_id == other.id
    assert "unknown task" in dead.reason and "lean.report" in dead.reason
    assert "this worker imported the app module and leanscrape" in dead.reason
    assert "-I/--include" in dead.reason


def test_queue_module_map_imports_what_each_queue_needs(
    project: Path, redis_url: str, producer: Celeriac
) -> None:
    mapping = json.dumps({"scrape": ["leanscrape"], "reports": ["leanreports"]})
    scraped = producer.send_task("lean.scrape", args=("u",), queue="scrape")
    reported = producer.send_task("lean.report", queue="reports")
    proc = burst(project, redis_url, "-Q", "scrape", CELERIAC_WORKER_QUEUE_MODULES=mapping)
    assert proc.returncode == 0, proc.stderr
    assert scraped.get(timeout=5) == {"url": "u", "reports_loaded": False}  # reports: not imported
    assert not reported.ready()
    proc = burst(project, redis_url, "-Q", "reports", CELERIAC_WORKER_QUEUE_MODULES=mapping)
    assert proc.returncode == 0, proc.stderr
    assert reported.get(timeout=5) == "report"


def test_a_missing_task_module_is_a_clear_error(project: Path, redis_url: str) -> None:
    proc = burst(project, redis_url, "-I", "leanscrape,nosuchmodule")
    assert proc.returncode == 1
    assert "Error: invalid setting 'include': cannot import task module 'nosuchmodule'" in proc.stderr
    assert "Traceback" not in proc.stderr
