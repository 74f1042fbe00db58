"""Periodic tasks and flow control on real worker processes, under SIGKILL (slow suite)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from celeriac import Celeriac, Signature

from .conftest import REPO

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class Workers:
    """``celeriac worker -A tests.integration.flow_apps:app`` subprocesses."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celeriac.cli",
                "worker",
                "-A",
                "tests.integration.flow_apps:app",
                "-l",
                "warning",
                *args,
            ],
            cwd=REPO,
            env={**os.environ, "CELERIAC_BROKER_URL": self.url, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def workers(redis_url: str) -> Iterator[Workers]:
    w = Workers(redis_url)
    yield w
    for p in w.procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _wait_for(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_three_embedded_schedulers_with_kills_fire_every_slot_exactly_once(
    workers: Workers, r: redis.Redis, reliability: Any
) -> None:
    from celeriac.beat.entries import configured_entries

    from .flow_apps import app

    entry = configured_entries(app)["every-second"]
    alive = [workers.start("-B", CELERIAC_LEASE_S="2") for _ in range(3)]
    _wait_for(lambda: r.llen("slots") >= 2, 30)
    t0 = time.time()
    rnd = random.Random(12)
    kills = 0
    while time.time() - t0 < 60:
        time.sleep(rnd.uniform(2.0, 5.0))
        victim = alive.pop(rnd.randrange(len(alive)))
        victim.kill()  # SIGKILL: no clean-up at all
        victim.wait()
        kills += 1
        alive.append(workers.start("-B", CELERIAC_LEASE_S="2"))
    t1 = time.time()
    time.sleep(3)  # let the last slots run (and a killed worker's delivery be reclaimed)
    workers.stop_all()
    runs = [line.decode().split() for line in r.lrange("slots", 0, -1)]
    # A run of a slot's message: delivery 1 is its first delivery. A worker killed after taking it
    # makes it run again (delivery 2, at-least-once): that is a redelivery of one message, not a
    # second firing, which would be a second message with the same id (two first deliveries).
    first = Counter(task_id for task_id, delivery, _ in runs if delivery == "1")
    ran = Counter(task_id for task_id, _, _ in runs)
    expected = [s * 1000 for s in range(int(t0) + 1, int(t1))]
    ids = {entry.task_id(slot): slot for slot in expected}
    missing = [ids[i] for i in ids if ran[i] == 0]
    doubled = [ids[i] for i in ids if first[i] > 1]
    redelivered = sum(1 for i in ids if first[i] == 0)
    assert not missing, f"slots never fired: {missing}"
    assert not doubled, f"slots fired twice: {doubled}"
    late = sorted(float(at) - ids[tid] / 1000 for tid, delivery, at in runs if tid in ids and delivery == "1")
    assert redelivered <= kills  # only messages a killed worker held
    p50, p99 = late[len(late) // 2], late[int(len(late) * 0.99)]
    reliability.record(
        "three workers with -B (embedded schedulers), a 1 s periodic entry for 60 s, one worker SIGKILLed "
        "every 2-5 s and replaced",
        "every slot fires exactly once (claimed and enqueued in one Lua script; no leader)",
        f"{len(expected)} slots, {kills} kills: 0 missing, 0 fired twice ({redelivered} run again after "
        "the worker holding them was killed); start after due p50 "
        f"{p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms",
    )


def test_global_rate_limit_over_three_worker_processes(
    workers: Workers, producer: Celeriac, r: redis.Redis, reliability: Any
) -> None:
    """Producers send 70/s (more than the limit) for 36 s; three workers start 50/s between them.

    Sent steadily rather than as one flood: a flood of limited tasks first has to be handed back by
    the workers, and reserved tasks that come due meanwhile wait behind it in the stream (docs/periodic-and-limits.md,
    "Rate and concurrency limits": a start-up gap as long as that hand-back).
    """
    for _ in range(3):
        workers.start("-c", "20")
    time.sleep(3)  # the workers consume
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < 36:
        due = int((time.monotonic() - start) * 70) + 7
        producer.send_many(Signature("fapp.limited", (i,), app=producer) for i in range(sent, due))
        sent = due
        time.sleep(0.1)
    workers.stop_all()
    starts = sorted(float(x) for x in r.lrange("starts", 0, -1))
    first = starts[0]
    window = [t for t in starts if first <= t < first + 30]
    per_second = Counter(int(t - first) for t in window)
    sliding = max(sum(1 for t in window if a <= t < a + 1) for a in window)
    assert 1425 <= len(window) <= 1575, len(window)
    assert sliding <= 60, sliding
    reliability.record(
        'rate_limit="50/s" (global), 3 worker processes (20 slots each), producers sending 70/s for 36 s',
        "50 starts per second across all workers, evenly spaced; limited tasks wait in Redis",
        f"{len(window)} starts in the first 30 s ({len(window) / 30:.1f}/s); busiest 1-s window {sliding}; "
        f"per-second counts {min(per_second.values())}-{max(per_second.values())}",
    )


def test_max_concurrency_is_never_exceeded_under_kill_9(
    workers: Workers, producer: Celeriac, r: redis.Redis, reliability: Any
) -> None:
    alive = [workers.start("-c", "10", CELERIAC_LEASE_S="1") for _ in range(3)]
    producer.send_many(Signature("fapp.conc", (i,), app=producer) for i in range(90))
    rnd = random.Random(3)
    killed_at: dict[int, float] = {}
    deadline = time.time() + 60
    while time.time() < deadline:
        done = {
            line.split()[3]
            for line in (x.decode() for x in r.lrange("conc", 0, -1))
            if line.startswith("end")
        }
        if len(done) >= 90:
            break
        time.sleep(rnd.uniform(1.0, 2.5))
        if len(killed_at) < 5:
            victim = alive.pop(rnd.randrange(len(alive)))
            victim.kill()
            victim.wait()
            killed_at[victim.pid] = time.time()
            alive.append(workers.start("-c", "10", CELERIAC_LEASE_S="1"))
    workers.stop_all()
    events = [line.decode().split() for line in r.lrange("conc", 0, -1)]
    opened: dict[tuple[str, str], float] = {}
    intervals: list[tuple[float, float]] = []
    for kind, pid, at, i in events:
        if kind == "start":
            opened[(pid, i)] = float(at)
        else:
            intervals.append((opened.pop((pid, i)), float(at)))
    for (pid, _i), began in opened.items():  # killed mid-run: it ran until its process died
        intervals.append((began, killed_at.get(int(pid), time.time())))
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    finished = {e[3] for e in events if e[0] == "end"}
    assert peak <= 3, peak
    assert len(finished) == 90
    reliability.record(
        "max_concurrency=3 on a task, 3 worker processes (10 slots each), 90 tasks of 0.3 s, 5 workers "
        "SIGKILLed mid-run and replaced (lease 1 s)",
        "never more than 3 running at once across all workers; a dead worker's slot frees after its lease",
        f"peak {peak} running; all 90 tasks finished; {len(intervals)} runs",
    )
