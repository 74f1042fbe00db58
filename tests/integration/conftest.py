"""Workers for integration tests: in-process (a thread with its own loop) or as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from celeriac import Celeriac

RUN_WORKER = Path(__file__).with_name("run_worker.py")
REPO = Path(__file__).resolve().parents[2]


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


class CliWorker:
    """``celeriac worker -A tests.integration.apps:app ...`` as a subprocess. A thread drains its log
    (stderr), so a chatty worker never blocks on a full pipe and tests wait on log lines as events."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celeriac.cli", "worker", "-A", "tests.integration.apps:app", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # EOF marker
            self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_log(self, text: str, timeout_s: float = 20, count: int = 1) -> str:
        """Wait until ``text`` appears in ``count`` log lines; return the whole log."""

        def seen() -> bool:
            return sum(text in line for line in self.lines) >= count or (
                bool(self.lines) and self.lines[-1] == ""
            )

        with self._changed:
            self._changed.wait_for(seen, timeout_s)
            log = "".join(self.lines)
        assert log.count(text) >= count, f"worker did not log {text!r} {count} time(s):\n{log}"
        return log

    def wait_ready(self) -> None:
        self.wait_log("consuming")

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM (warm shutdown) and wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        self.close()
        return code

    def close(self) -> None:
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def cli_worker(redis_url: str) -> Iterator[Callable[..., CliWorker]]:
    """Start ``celeriac worker`` subprocesses for tests/integration/apps.py: ``cli_worker("-P",
    "processes", CELERIAC_LEASE_S="1")``; each has logged ``consuming`` when this returns."""
    started: list[CliWorker] = []

    def start(*args: str, wait: bool = True, **env: str) -> CliWorker:
        worker = CliWorker(args, {**os.environ, "CELERIAC_BROKER_URL": redis_url, **env})
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
        w.proc.wait()
        w.close()


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


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test's Redis, to observe what tasks record."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def producer(redis_url: str) -> Iterator[Celeriac]:
    """A producer app that sends the tasks of tests/integration/apps.py by name."""
    app = Celeriac("producer", broker=redis_url)
    yield app
    app.close()


class Reliability:
    """What one fault test records for docs/reliability.md (see tests/integration/reliability.py)."""

    def __init__(self, test: str) -> None:
        self.test = test

    def record(self, fault: str, checked: str, observed: str) -> None:
        from .reliability import RECORDER

        RECORDER.add(self.test, fault, checked, observed)


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Reliability:
    """``reliability.record(fault, checked, observed)``: a row of docs/reliability.md."""
    return Reliability(request.node.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a passing run of the whole suite (slow fault tests included): write docs/reliability.md
    when asked (``--write-reliability`` or ``CELERIAC_WRITE_RELIABILITY=1``), else check that it is
    current and fail the run if it is not (see tests/integration/reliability.py)."""
    from .reliability import RECORDER, REGENERATE, REPORT

    opt = session.config.getoption
    whole = not opt("markexpr", "") and not opt("keyword", "") and not opt("lf", False)
    if not (exitstatus == 0 and whole and RECORDER.rows and session.testscollected > 300):
        return
    if opt("write_reliability", False) or os.environ.get("CELERIAC_WRITE_RELIABILITY") == "1":
        REPORT.write_text(RECORDER.render())
        return
    problems = RECORDER.stale(REPORT.read_text() if REPORT.exists() else "")
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"docs/reliability.md is out of date ({len(problems)} difference(s)):"]
        lines += [f"  - {p}" for p in problems[:20]]
        lines.append(f"Regenerate it: {REGENERATE}.")
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
