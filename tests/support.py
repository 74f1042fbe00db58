"""Helpers shared by several test packages (imported as ``tests.support``; pytest runs from the
repository root, as ``tests.integration.apps`` is imported elsewhere)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celeriac import Celeriac
from celeriac.testing import ThreadWorker

# set in a developer's shell, these would point the child at another app, broker or queue
_INHERITED = ("CELERIAC_APP", "CELERIAC_BROKER_URL", "CELERIAC_WORKER_QUEUES")


class CliProcess:
    """``python -m celeriac.cli ARGS`` started in ``cwd`` as a user would, its stderr (the log)
    collected line by line in a thread so that the pipe never fills up."""

    def __init__(self, args: list[str], cwd: Path, env: Mapping[str, str]) -> None:
        full_env = {**os.environ, **env}
        for var in _INHERITED:
            full_env.pop(var, None)
        full_env["PYTHONPATH"] = os.pathsep.join([str(cwd), full_env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celeriac.cli", *args],
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
        """Wait until ``text`` appears in the log; fails at once if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log:
            assert self.proc.poll() is None or text in self.log, (
                f"the process exited ({self.proc.returncode}):\n{self.log}"
            )
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log}"
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM (a warm shutdown), then SIGKILL after 30 s; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code


@contextmanager
def running(app: Celeriac, **options: Any) -> Iterator[ThreadWorker]:
    """A :class:`ThreadWorker` of ``app`` (``options`` as for it) for the ``with`` block, stopped after."""
    worker = ThreadWorker(app, **options).start()
    try:
        yield worker
    finally:
        worker.stop()
