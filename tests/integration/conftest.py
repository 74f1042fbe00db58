"""Workers for integration tests: in-process (a thread with its own loop) or as subprocesses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from celeriac import Celeriac, Worker
from celeriac.worker import Outcome

RUN_WORKER = Path(__file__).with_name("run_worker.py")


class ThreadWorker:
    """A Worker running on its own event loop in a thread; ``outcomes`` records what it settled."""

    def __init__(self, app: Celeriac, **options: Any) -> None:
        self.outcomes: list[Outcome] = []
        self._changed = threading.Condition()
        self.worker = Worker(app, on_outcome=self._record, **options)
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            task = asyncio.create_task(self.worker.run())
            ready = asyncio.create_task(self.worker.wait_ready())
            await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
            self._ready.set()
            ready.cancel()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def _record(self, outcome: Outcome) -> None:
        with self._changed:
            self.outcomes.append(outcome)
            self._changed.notify_all()

    def wait_outcomes(
        self, predicate: Callable[[list[Outcome]], bool], timeout_s: float = 20
    ) -> list[Outcome]:
        """Block until ``predicate(outcomes)`` holds (outcomes are recorded after Redis confirmed them)."""
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self.outcomes), timeout_s), self.outcomes
            return list(self.outcomes)

    def start(self) -> ThreadWorker:
        self.thread.start()
        assert self._ready.wait(10), "worker did not start"
        if self.error:
            raise self.error
        return self

    def stop(self, cold: bool = False) -> None:
        self.worker.stop(cold=cold)
        self.thread.join(30)
        assert not self.thread.is_alive(), "worker did not stop"


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
