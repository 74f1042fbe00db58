"""``celeriac dashboard`` and the worker's monitoring flags, as a user types them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import redis

from celeriac.testing import free_port

from .conftest import TasksModule

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.10", "::"])
def test_dashboard_refuses_a_public_address_without_auth(
    cli: Callable[..., Any], tasks_module: TasksModule, address: str
) -> None:
    result = cli("dashboard", "-A", tasks_module.spec, "--address", address)
    assert result.exit_code == 2
    assert "without authentication" in result.output


def test_dashboard_help_and_worker_flags(cli: Callable[..., Any]) -> None:
    out = cli("dashboard", "--help").output
    assert "--address" in out and "--port" in out and "CELERIAC_DASHBOARD_PORT" in out
    out = cli("worker", "--help").output
    assert "--without-events" in out and "--metrics-port" in out


def test_worker_without_events_records_nothing(
    cli: Callable[..., Any], tasks_module: TasksModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("celeriac.cli.worker.configure_logging", lambda level: None)
    app = tasks_module.app
    first = app.tasks["cli.add"].delay(1, 2)
    assert cli("worker", "-A", tasks_module.spec, "--burst", "--without-events").exit_code == 0
    assert first.get(timeout=5) == 3
    client = redis.Redis.from_url(tasks_module.broker_url)
    assert client.keys("*:m:*") == []
    app.tasks["cli.add"].delay(1, 2)
    assert cli("worker", "-A", tasks_module.spec, "--burst").exit_code == 0
    assert client.exists("celeriac:{default}:m:log")


def _wait_http(url: str, timeout_s: float = 20) -> bytes:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bytes(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_dashboard_serves_pages_and_metrics(tasks_module: TasksModule) -> None:
    """The real command in a subprocess: it binds to loopback and serves pages, API and /metrics."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "celeriac", "dashboard", "-A", tasks_module.spec, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert b"celeriac" in _wait_http(f"{base}/")
        assert b'"queues"' in _wait_http(f"{base}/api/queues")
        assert b"celeriac_queue_length" in _wait_http(f"{base}/metrics")
        with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=1):
            pass  # loopback address only: not even another loopback alias
    finally:
        proc.terminate()
        proc.wait(10)


def test_worker_metrics_port(tasks_module: TasksModule) -> None:
    """``celeriac worker --metrics-port``: the worker process serves the cluster's /metrics too."""
    port = free_port()
    app = tasks_module.app
    app.tasks["cli.add"].delay(1, 2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celeriac", "worker", "-A", tasks_module.spec, "--metrics-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        text = b""
        while b'celeriac_tasks_total{queue="default",state="SUCCESS",task="cli.add"} 1.0' not in text:
            assert time.monotonic() < deadline, text.decode()
            text = _wait_http(f"http://127.0.0.1:{port}/metrics")
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)
