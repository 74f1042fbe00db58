"""Redis down, full, restarted or misconfigured: clear errors, no silent loss, recovery by itself."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from celeriac import BrokerConnectionError, BrokerError, BrokerFullError, Celeriac, ConfigurationError
from celeriac._redis.keys import GROUP
from celeriac.testing import RedisServer, free_port

from .conftest import REPO, eventually
from .marks import mark_worker_starter, read_marks

pytestmark = pytest.mark.redis


def test_send_with_redis_down_raises_a_celeriac_error() -> None:
    app = Celeriac("t", broker=f"redis://:hunter2@127.0.0.1:{free_port()}/0")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(BrokerConnectionError) as info:
        add.delay(1, 2)
    assert "hunter2" not in str(info.value)  # the password never appears in errors
    app.close()


@pytest.mark.parametrize(
    "url", ["redis://localhost:port/0", "http://localhost:6379", "redis://", "redis://h/db"]
)
def test_invalid_broker_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="broker_url"):
        Celeriac("t", broker=url)


INVALID_SETTINGS = {  # environment of a worker -> the setting its one error line must name
    "CELERIAC_LEASE_S": ("-1", "lease_s"),
    "CELERIAC_MAX_DELIVERIES": ("zero", "max_deliveries"),
    "CELERIAC_MESSAGE_SIGNING_KEY": ("short", "message_signing_key"),
    "CELERIAC_BROKER_URL": ("redis://:s3cret-pw@127.0.0.1:notaport/0", "broker_url"),
    "CELERIAC_RESULT_BACKEND": ("redis://:s3cret-pw@127.0.0.1:1/0?ssl_ca_certs=/x.pem", "result_backend"),
}


def test_a_worker_with_an_invalid_setting_exits_at_once_with_one_error_line(
    redis_url: str, reliability: Any
) -> None:
    started = time.monotonic()
    procs = {
        var: subprocess.Popen(
            [sys.executable, "-m", "celeriac", "worker", "-A", "tests.integration.apps:app"],
            cwd=REPO,
            env={**os.environ, "CELERIAC_BROKER_URL": redis_url, var: value},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for var, (value, _) in INVALID_SETTINGS.items()
    }
    slowest = 0.0
    for var, proc in procs.items():
        _, err = proc.communicate(timeout=30)
        slowest = max(slowest, time.monotonic() - started)
        setting = INVALID_SETTINGS[var][1]
        assert proc.returncode == 1, (var, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"Error: invalid setting {setting!r}"), (var, err)
        assert "s3cret" not in err  # the password of a refused URL is not echoed
    reliability.record(
        "Invalid configuration of a worker (CELERIAC_* variables: lease, max deliveries, signing key, "
        "broker and result URLs with a password)",
        "the worker exits 1 at start with one `Error:` line naming the setting, no traceback, no password",
        f"{len(procs)} of {len(procs)} refused, each with one line; all exited within {slowest:.1f} s "
        "(started together)",
    )


def test_full_redis_refuses_sends_clearly_and_keeps_what_is_queued(
    fresh_redis: RedisServer, thread_worker: Any, reliability: Any
) -> None:
    client = redis.Redis.from_url(fresh_redis.url)
    app = Celeriac("t", broker=fresh_redis.url)
    done: list[int] = []

    @app.task
    def add(x: int, y: int) -> int:
        done.append(x + y)
        return x + y

    thread_worker(app).stop()  # workers consumed this queue before (its consumer group exists)
    queued = 50
    app.send_many([add.s(i, 0) for i in range(queued - 1)])
    add.apply_async((queued - 1, 0), countdown=0.2)  # one waits in the delayed set
    client.config_set("maxmemory-policy", "noeviction")
    for i in range(200):  # data fills Redis, then the limit drops below what is used
        client.set(f"filler:{i}", "x" * 10_000)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) // 2)
    refusals = []
    for send in (  # every way to send: one, delayed (a script), bulk (a pipeline of scripts)
        lambda: add.delay(1, 2),
        lambda: add.apply_async((1, 2), countdown=5),
        lambda: app.send_many([add.s(1, 2), add.s(3, 4)]),
    ):
        with pytest.raises(BrokerFullError, match="out of memory") as info:
            send()
        refusals.append(info.value)
    stats = app.broker.stats("default")
    assert (stats.ready, stats.delayed) == (queued - 1, 1)  # what was queued before is still there
    worker = thread_worker(app)  # a worker drains while Redis is full (acks free memory)
    started = time.monotonic()
    worker.wait_outcomes(lambda outcomes: len(outcomes) == queued)
    drain_s = time.monotonic() - started
    assert sorted(done) == list(range(queued))  # the delayed one too: promoted while full
    assert int(client.info("memory")["used_memory"]) > int(client.config_get("maxmemory")["maxmemory"])
    client.config_set("maxmemory", 0)  # memory frees up: sending works again
    add.delay(1000, 1)
    worker.wait_outcomes(lambda outcomes: len(outcomes) == queued + 1)
    assert done[-1] == 1001
    assert all(o.kind == "ack" for o in worker.outcomes)
    app.close()
    client.close()
    reliability.record(
        "Redis full (maxmemory below used memory, noeviction)",
        "send, delayed send and send_many raise BrokerFullError; queued tasks kept and drained while "
        "full; sending works once memory frees",
        f"{len(refusals)} of 3 send kinds refused ({str(refusals[0]).split(': ', 1)[-1][:60]}...); "
        f"{queued} of {queued} queued tasks ran while full, in {drain_s:.2f} s; 1 send after the limit "
        "was lifted ran",
    )


def test_full_redis_holds_outcomes_that_need_memory_until_it_frees(
    fresh_redis: RedisServer, thread_worker: Any, reliability: Any
) -> None:
    """A result to store or a retry to park needs memory: while Redis is full the worker keeps those
    deliveries (leases renewed, nothing reclaimed or lost) and records them once memory frees. Plain
    acks in the same batches free memory: they go through meanwhile."""
    client = redis.Redis.from_url(fresh_redis.url)
    app = Celeriac("t", broker=fresh_redis.url, lease_s=0.5)
    runs: list[str] = []
    ran = threading.Condition()

    def note(what: str) -> None:
        with ran:
            runs.append(what)
            ran.notify_all()

    @app.task(ignore_result=False)
    def add(x: int, y: int) -> int:
        note(f"add{x}")
        return x + y

    @app.task(bind=True, default_retry_delay=0.01)
    def flaky(self: Any) -> int:
        note(f"flaky{self.request.retries}")
        if self.request.retries == 0:
            raise self.retry()
        return 1

    @app.task
    def plain(n: int) -> None:  # stores no result: acked while Redis is full
        note(f"plain{n}")

    thread_worker(app).stop()  # the consumer group exists
    sigs = [add.s(i, 1) for i in range(3)] + [plain.s(i) for i in range(3)]
    results = app.send_many([sigs[i] for i in (0, 3, 1, 4, 2, 5)])[::2]  # in the same batches
    flaky.delay()
    client.config_set("maxmemory-policy", "noeviction")
    for i in range(200):
        client.set(f"filler:{i}", "x" * 10_000)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) // 2)
    worker = thread_worker(app)
    with ran:  # every task ran; only the plain acks can be written
        assert ran.wait_for(lambda: len(runs) == 7, 10)
    acked_while_full = worker.wait_outcomes(lambda outcomes: len(outcomes) == 3)
    assert sorted(o.task_name.rsplit(".", 1)[-1] for o in acked_while_full) == ["plain"] * 3
    time.sleep(4 * 0.5)  # four leases pass while Redis stays full: time itself is what is tested
    held = app.broker.stats("default").running
    assert held == 4 and len(worker.outcomes) == 3
    assert worker.worker.stats.reclaimed == 0
    client.config_set("maxmemory", 0)
    freed = time.monotonic()
    assert [r.get(timeout=15) for r in results] == [1, 2, 3]
    worker.wait_outcomes(lambda outcomes: sum(o.kind == "ack" for o in outcomes) == 7, timeout_s=15)
    recorded_s = time.monotonic() - freed
    assert sorted(runs) == ["add0", "add1", "add2", "flaky0", "flaky1", "plain0", "plain1", "plain2"]
    assert worker.worker.stats.reclaimed == 0
    app.close()
    client.close()
    reliability.record(
        "Redis full while outcomes need memory (3 results to store, 1 retry to park, 3 plain acks)",
        "the deliveries stay owned with their leases renewed (nothing reclaimed, lost or run twice); "
        "plain acks of the same batches go through; the rest recorded once memory frees",
        f"{len(acked_while_full)} plain acks recorded while full; {held} deliveries held through 4 leases, "
        f"0 reclaimed; all recorded {recorded_s:.1f} s "
        f"after memory freed (settle backoff); {len(runs)} runs for 4 tasks and 1 retry",
    )


def test_eviction_policy_that_can_lose_queues_is_reported(fresh_redis: RedisServer) -> None:
    client = redis.Redis.from_url(fresh_redis.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    app = Celeriac("t", broker=fresh_redis.url)
    warnings = app.broker.server_warnings()
    assert any("allkeys-lru" in w and "noeviction" in w for w in warnings)
    client.config_set("maxmemory-policy", "noeviction")
    assert app.broker.server_warnings() == []
    app.close()
    client.close()


def test_worker_survives_a_redis_restart(
    fresh_redis: RedisServer, thread_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = Celeriac("t", broker=fresh_redis.url, lease_s=1.0)

    @app.task(ignore_result=False)
    def add(x: int, y: int) -> int:
        return x + y

    worker = thread_worker(app)
    assert add.delay(1, 2).get(timeout=10) == 3
    with caplog.at_level(logging.WARNING, logger="celeriac.worker"):
        fresh_redis.restart()  # kill -9 and start again: without persistence the data is gone
        # sends may fail while Redis is away; once it answers, the worker consumes again by itself
        result = add.delay(20, 22)
        assert result.get(timeout=20) == 42
    worker.wait_outcomes(lambda outcomes: any(o.value == 42 for o in outcomes))
    app.close()


class Producer(threading.Thread):
    """Sends ``itest.mark`` tasks one at a time until stopped, sorting each token by what the send
    did: returned (``ok``) or raised (``raised``). A send that does neither within the join timeout
    fails the test."""

    def __init__(self, app: Celeriac, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.app = app
        self.ok: list[str] = []
        self.raised: list[str] = []
        self.errors: set[str] = set()
        self.stopping = threading.Event()
        self.failed = threading.Event()  # set by the first send that raised
        self.progress = threading.Condition()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            token = f"{self.name}-{n}"
            n += 1
            try:
                self.app.send_task("itest.mark", args=(token,))
            except BrokerError as exc:
                self.raised.append(token)
                self.errors.add(type(exc).__name__)
                self.failed.set()
                self.stopping.wait(0.02)  # a producer's own backoff while Redis is away
            else:
                with self.progress:
                    self.ok.append(token)
                    self.progress.notify_all()

    def wait_ok(self, count: int, timeout_s: float = 30) -> None:
        """Block until this producer's sends returned ``count`` times in all."""
        with self.progress:
            assert self.progress.wait_for(lambda: len(self.ok) >= count, timeout_s), (
                f"{self.name}: only {len(self.ok)} sends returned, errors {self.errors}"
            )


@pytest.mark.slow
def test_redis_killed_and_restarted_with_aof_while_producers_send_and_workers_drain(
    tmp_path: Path, reliability: Any
) -> None:
    """SIGKILL of Redis under load, then a restart on the same port and data directory.

    ``appendfsync always``: Redis fsyncs the append-only file before it replies, so every send that
    returned to its caller is on disk when Redis is killed, and the assertion can be exact: every
    such task runs, none is lost. (``everysec`` would make it "all but up to one second of sends"
    against a machine crash, an assertion too loose to catch a real loss.) Sends that raised may or
    may not have reached Redis (a reply lost with the connection): they are counted, not required.
    Runs are recorded in files by the workers, so the count does not depend on the Redis killed.
    """
    with RedisServer(appendfsync="always") as server:
        start = mark_worker_starter(server.url, tmp_path, CELERIAC_LEASE_S="2")
        workers = [start(f"restart-{k}", "-P", "asyncio", "-c", "50") for k in range(2)]
        app = Celeriac("producer", broker=server.url)
        producers = [Producer(app, f"p{k}") for k in range(3)]
        try:
            for p in producers:
                p.start()
            for p in producers:
                p.wait_ok(1000)
            eventually(lambda: len(read_marks(tmp_path)) >= 1000)  # the workers are draining
            server.kill()
            killed_at = time.monotonic()
            sent_before = sum(len(p.ok) for p in producers)
            for p in producers:  # every producer saw the outage as an error raised to it
                assert p.failed.wait(15), f"{p.name}: no send raised while Redis was down"
            for w in workers:  # ... and every worker, which backs off and retries
                w.wait_log("retrying in")
            server.start()
            down_s = time.monotonic() - killed_at
            restarted = [len(p.ok) for p in producers]
            for p, before in zip(producers, restarted):  # sending works again, by itself
                p.wait_ok(before + 1000)
        finally:
            for p in producers:
                p.stopping.set()
            for p in producers:
                p.join(15)
        assert not any(p.is_alive() for p in producers), "a send neither returned nor raised"
        ok = {t for p in producers for t in p.ok}
        raised = {t for p in producers for t in p.raised}

        def all_ran() -> bool:
            return ok <= read_marks(tmp_path).keys()

        recovered = time.monotonic()
        eventually(all_ran, timeout_s=40)
        drained_s = time.monotonic() - recovered
        runs = read_marks(tmp_path)
        lost = ok - runs.keys()
        duplicates = sum(runs.values()) - len(runs)
        raised_but_ran = len(raised & runs.keys())
        assert not lost, f"{len(lost)} sent tasks never ran: {sorted(lost)[:10]}"
        assert runs.keys() <= ok | raised  # nothing ran that was not sent
        assert all(w.proc.poll() is None for w in workers), "a worker exited instead of recovering"
        keys = app.broker.keys.queue("default")  # type: ignore[attr-defined]
        client = redis.Redis.from_url(server.url)
        eventually(lambda: client.xpending(keys.ready, GROUP)["pending"] == 0)  # no delivery stuck
        assert app.broker.stats("default").dead == 0
        client.close()
        app.close()
        for w in workers:
            assert w.stop() == 0
    counts = (
        f"{len(ok):,} sends returned ({sent_before:,} before the kill), {len(raised)} raised "
        f"({', '.join(sorted(p for p in {e for q in producers for e in q.errors}))}; "
        f"{raised_but_ran} of them ran anyway); {len(runs):,} ran, 0 lost, {duplicates} duplicates; "
        f"Redis down {down_s:.2f} s, every sent task ran {drained_s:.1f} s after the last send"
    )
    print(counts)
    reliability.record(
        "Redis killed (SIGKILL) and restarted with AOF (appendfsync always) while 3 producer threads "
        "send and 2 worker processes drain",
        "every send returned or raised; workers and producers recover without restart; every task "
        "whose send returned ran; no delivery left pending",
        counts,
    )
