"""Worker ids: Celery's ``%h`` abbreviations, one live worker per id, and restart after a crash.

Two workers with one id shared one consumer: when one stopped, the other logged "lease lost" and tasks
ran again. A second live worker with an id in use is now refused (with the holder and how to pick
another id), while a worker killed with ``kill -9`` can be restarted under its id at once (same host:
its pid is gone) or once its registration expires (another host).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from celeriac import Celeriac
from celeriac.exceptions import ConfigurationError
from celeriac.worker.identity import BEAT_FIELD, expand_worker_id

from .conftest import CliWorker

HOST = socket.gethostname()


# ---- expansion -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("worker1@%h", "worker1@box.example.com"),
        ("worker1@%n", "worker1@box"),
        ("%n.%d", "box.example.com"),
        ("w%i@%h", "w0@box.example.com"),
        ("w%I@%n", "w@box"),
        ("100%%@%n", "100%@box"),
        ("plain", "plain"),
    ],
)
def test_celery_abbreviations(template: str, expected: str) -> None:
    assert expand_worker_id(template, hostname="box.example.com") == expected


def test_default_host_and_bad_abbreviations() -> None:
    assert expand_worker_id("w@%h") == f"w@{HOST}"
    with pytest.raises(ConfigurationError, match="unknown abbreviation %x"):
        expand_worker_id("w@%x")
    with pytest.raises(ConfigurationError, match="lone %"):
        expand_worker_id("w@%")
    with pytest.raises(ConfigurationError, match="empty worker id"):
        expand_worker_id("%d", hostname="nodomain")


# ---- through the real program -------------------------------------------------------------------------
TTL_S = "3"  # worker_ttl_s: heartbeats every second, a dead worker's registration gone after 3 s


@pytest.fixture
def producer(redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("producer", broker=redis_url)
    yield app
    app.close()


def wait_registered(producer: Celeriac) -> None:
    """Until a worker is registered (its first heartbeat follows its "consuming" line)."""
    deadline = time.monotonic() + 10
    while not producer.broker.workers():
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.redis
def test_percent_h_is_expanded_and_shown_by_status(
    cli_worker: Callable[..., CliWorker], producer: Celeriac
) -> None:
    w = cli_worker("-n", "worker1@%h", CELERIAC_WORKER_TTL_S=TTL_S)
    assert f"worker worker1@{HOST} consuming" in w.log
    wait_registered(producer)
    assert [i.worker_id for i in producer.broker.workers()] == [f"worker1@{HOST}"]
    assert w.stop() == 0


@pytest.mark.redis
def test_a_bad_abbreviation_is_a_usage_error(cli_worker: Callable[..., CliWorker]) -> None:
    w = cli_worker("-n", "worker1@%q", wait=False)
    assert w.proc.wait(30) == 2
    w.close()
    assert "unknown abbreviation %q" in w.log


@pytest.mark.redis
def test_a_second_live_worker_with_the_same_id_is_refused(
    cli_worker: Callable[..., CliWorker], producer: Celeriac
) -> None:
    first = cli_worker("-n", "dup@%h", CELERIAC_WORKER_TTL_S=TTL_S)
    wait_registered(producer)
    started = time.monotonic()
    second = cli_worker("-n", "dup@%h", CELERIAC_WORKER_TTL_S=TTL_S, wait=False)
    assert second.proc.wait(30) == 1
    refused_s = time.monotonic() - started
    second.close()
    err = second.log
    assert f"worker id 'dup@{HOST}' is in use by a live worker (pid {first.proc.pid} on {HOST}" in err
    assert "-n worker2@%h" in err
    assert f"worker dup@{HOST} consuming" not in err
    # told from the holder's next heartbeat (every worker_ttl_s / 3), not by waiting for an expiry
    assert refused_s < 15, refused_s
    # the first one was not disturbed: it still runs tasks and is the only one registered
    assert producer.send_task("itest.pid").get(timeout=15) == first.proc.pid
    assert [i.fields["pid"] for i in producer.broker.workers()] == [str(first.proc.pid)]
    assert first.stop() == 0


@pytest.mark.redis
def test_restart_after_kill_9_with_the_same_id_is_immediate(
    cli_worker: Callable[..., CliWorker], producer: Celeriac
) -> None:
    first = cli_worker("-n", "crashy@%h", CELERIAC_WORKER_TTL_S="30", CELERIAC_LEASE_S="1")
    wait_registered(producer)
    first.proc.kill()
    first.proc.wait()
    assert [i.worker_id for i in producer.broker.workers()] == [f"crashy@{HOST}"]  # left behind
    started = time.monotonic()
    second = cli_worker("-n", "crashy@%h", CELERIAC_WORKER_TTL_S="30", CELERIAC_LEASE_S="1")
    # the registration lives 30 s more, but its pid is gone on this host: no wait
    assert time.monotonic() - started < 15
    assert "previous holder (pid" in second.log
    assert producer.send_task("itest.pid").get(timeout=15) == second.proc.pid
    assert second.stop() == 0


@pytest.mark.redis
def test_an_id_held_on_another_host_waits_for_a_dead_holder_and_refuses_a_live_one(
    cli_worker: Callable[..., CliWorker], producer: Celeriac, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = producer.broker.keys  # type: ignore[attr-defined]

    def register(worker_id: str, beat: str, ttl_ms: int) -> None:
        fields = {"hostname": "elsewhere", "pid": "4242", "queues": "default", BEAT_FIELD: beat}
        client.hset(keys.worker(worker_id), mapping=fields)
        client.pexpire(keys.worker(worker_id), ttl_ms)
        client.zadd(keys.workers, {worker_id: int(time.time() * 1000) + ttl_ms})

    # dead on another host: its registration expires within its TTL, then the worker starts
    # (its TTL outlasts a worker start under load, and stays within the worker's own worker_ttl_s)
    register("ghost", "1.0", 10_000)
    started = time.monotonic()
    w = cli_worker("-n", "ghost", CELERIAC_WORKER_TTL_S="12", wait=False)
    w.wait_log("consuming", timeout_s=40)
    waited_s = time.monotonic() - started
    assert "waiting up to" in w.log and "registration expired" in w.log
    assert waited_s < 30, waited_s
    assert w.stop() == 0

    # alive on another host: a heartbeat arrives while the new worker watches, so it is refused
    stop = threading.Event()

    def heartbeats() -> None:
        while not stop.is_set():
            register("busy", f"{time.time():.6f}", 3_000)
            stop.wait(0.5)

    beating = threading.Thread(target=heartbeats, daemon=True)
    beating.start()
    try:
        refused = cli_worker("-n", "busy", CELERIAC_WORKER_TTL_S=TTL_S, wait=False)
        assert refused.proc.wait(30) == 1
        refused.close()
        assert "worker id 'busy' is in use by a live worker (pid 4242 on elsewhere" in refused.log
    finally:
        stop.set()
        beating.join(5)
        client.close()
