"""Real worker processes for the framework examples: ``celeriac worker`` started as a user would,
in the example's directory, stopped warm after the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class WorkerProcess:
    """``python -m celeriac.cli worker ...`` with its log lines collected."""

    def __init__(self, args: list[str], cwd: Path, env: Mapping[str, str]) -> None:
        full_env = {**os.environ, **env}
        for var in ("CELERIAC_APP", "CELERIAC_BROKER_URL", "CELERIAC_WORKER_QUEUES"):
            full_env.pop(var, None)
        full_env["PYTHONPATH"] = os.pathsep.join([str(cwd), full_env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celeriac.cli", "worker", *args],
            cwd=cwd,
            env=full_env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log:
            assert self.proc.poll() is None, f"the worker exited ({self.proc.returncode}):\n{self.log}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log}"
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


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
