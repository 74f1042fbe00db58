"""Workers for integration tests: in-process (a thread with its own loop) or as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from celeriac import Celeriac
from celeriac.testing import ThreadWorker

RUN_WORKER = Path(__file__).with_name("run_worker.py")


@pytest.fixture
def thread_worker() -> Iterator[Callable[..., ThreadWorker]]:
    started: list[ThreadWorker] = []

    def start(app: Celeriac, **options: Any) -> ThreadWorker:
        w = ThreadWorker(app, **options).start()
        started.append(w)
        return w

    yield start
    for w in started:
        if w.thread.is_alive():
            w.stop(cold=True)


class ProcessWorkers:
    """Worker subprocesses running tests/integration/apps.py against one Redis."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = {**os.environ, "CELERIAC_BROKER_URL": url, **env}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, queues: str = "default", concurrency: int = 4, **env: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, str(RUN_WORKER), queues, str(concurrency)],
            env={**self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def wait_log(proc: subprocess.Popen[bytes], text: str) -> None:
        """Read the worker's log until a line contains ``text``."""
        assert proc.stderr is not None
        for line in proc.stderr:
            if text.encode() in line:
                return
        raise AssertionError(f"worker exited without logging {text!r}")

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stderr:
                p.stderr.close()


@pytest.fixture
def process_workers(redis_url: str) -> Iterator[Callable[..., ProcessWorkers]]:
    made: list[ProcessWorkers] = []

    def make(**env: str) -> ProcessWorkers:
        pw = ProcessWorkers(redis_url, env)
        made.append(pw)
        return pw

    yield make
    for pw in made:
        pw.stop_all()


def take(r: redis.Redis, key: str, count: int, timeout_s: float = 30) -> list[str]:
    """Pop ``count`` items from list ``key`` as tasks push them (BLPOP: waits on the event itself)."""
    out: list[str] = []
    for _ in range(count):
        item = r.blpop([key], timeout=timeout_s)
        assert item is not None, (
            f"only {len(out)} of {count} items arrived on {key} within {timeout_s}s: {out}"
        )
        out.append(item[1].decode())
    return out


def eventually(check: Callable[[], bool], timeout_s: float = 15) -> None:
    """Wait until ``check()`` holds. Only for state that another process changes and no event
    announces (an ack recorded by a worker process); everything else awaits its event."""
    import time

    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)
