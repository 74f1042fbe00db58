"""Real worker processes for the framework examples: ``celeriac worker`` started as a user would,
in the example's directory, stopped warm after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from tests.support import CliProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class WorkerProcess(CliProcess):
    """``python -m celeriac.cli worker ...`` with its log lines collected."""

    def __init__(self, args: list[str], cwd: Path, env: Mapping[str, str]) -> None:
        super().__init__(["worker", *args], cwd, env)


@pytest.fixture
def start_worker_process() -> Iterator[Callable[..., WorkerProcess]]:
    """``start(cwd, env, *args)``: a running worker (waits for its "consuming" line)."""
    started: list[WorkerProcess] = []

    def start(cwd: Path, env: Mapping[str, str], *args: str) -> WorkerProcess:
        worker = WorkerProcess(list(args), cwd, env)
        started.append(worker)
        worker.wait_for("consuming")
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(autouse=True)
def _disconnect_flask_receivers() -> Iterator[None]:
    """celery_init_app connects process-wide signal receivers: drop them after each test, so that
    later tests find no run signal connected (tasks then run unwrapped)."""
    yield
    from celeriac import signals
    from celeriac.contrib import flask

    signals.task_prerun.disconnect(flask._push)
    signals.task_postrun.disconnect(flask._pop)
