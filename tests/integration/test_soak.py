"""Soak: hundreds of thousands of tasks while worker processes are killed with SIGKILL at random.

Nothing may be lost, and every task that ran twice must be explained by a delivery that a killed
worker held: at-least-once with duplicates bounded by what the kills interrupted.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from celeriac import Celeriac
from celeriac._redis.keys import GROUP
from celeriac.canvas import Signature
from celeriac.testing import RedisServer

from .conftest import CliWorker, eventually
from .marks import mark_worker_starter, read_marks

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TASKS = 200_000
WORKERS = 3
CONCURRENCY = 200
LEASE_S = 3.0  # a killed worker's deliveries run again after about this long
TASK_S = 0.05  # each task records its run, then awaits this long: kills catch tasks mid-run
SEED = 20_261_128


def test_soak_200k_tasks_with_workers_killed_at_random(tmp_path: Path, reliability: Any) -> None:
    rng = random.Random(SEED)
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        app = Celeriac("producer", broker=server.url)
        keys = app.broker.keys.queue("default")  # type: ignore[attr-defined]
        start = mark_worker_starter(server.url, tmp_path, CELERIAC_LEASE_S=str(LEASE_S))
        generation = 0

        def spawn() -> tuple[str, CliWorker]:
            nonlocal generation
            generation += 1
            name = f"soak-{generation}"
            return name, start(name, "-P", "asyncio", "-c", str(CONCURRENCY))

        began = time.monotonic()
        for first in range(0, TASKS, 20_000):  # bulk enqueue, in a few pipelined sends
            app.send_many([Signature("itest.mark", (i, TASK_S)) for i in range(first, first + 20_000)])
        enqueue_s = time.monotonic() - began
        assert app.broker.stats("default").ready == TASKS

        live = dict(spawn() for _ in range(WORKERS))
        done = threading.Event()
        kills: list[tuple[str, int]] = []  # (consumer, deliveries it held when killed)
        taken_from_live: list[int] = []  # deliveries reclaimed from a worker while it was alive
        killer_error: list[BaseException] = []

        def killer() -> None:
            try:
                # a kill every 0.8-2 s, at random, while tasks remain to be taken
                while not done.wait(rng.uniform(0.8, 2.0)) and app.broker.stats("default").ready > 0:
                    name = rng.choice(sorted(live))
                    victim = live.pop(name)
                    taken_from_live.append(_reclaimed_from(client, keys.reclaimed, name))
                    victim.proc.kill()
                    victim.proc.wait()
                    # Counted at once: its deliveries stay in the group's pending list, owned by its
                    # consumer, until their lease (LEASE_S, renewed every LEASE_S / 3) expires and a
                    # live worker reclaims them. These are every task this kill could make run twice.
                    held = _pending_of(client, keys.ready, name)
                    kills.append((name, held))
                    victim.close()
                    new_name, replacement = spawn()
                    live[new_name] = replacement
            except BaseException as exc:  # reported by the test thread
                killer_error.append(exc)

        drain_began = time.monotonic()
        thread = threading.Thread(target=killer, name="soak-killer", daemon=True)
        thread.start()
        try:

            def drained() -> bool:
                stats = app.broker.stats("default")
                return stats.ready == 0 and stats.running == 0

            # a bound, not a speed check (benchmarks measure speed): 200k tasks drain in 10-20 s on
            # a quiet 2-core machine, and several times that when other jobs share its cores
            eventually(drained, timeout_s=180)
            drain_s = time.monotonic() - drain_began
        finally:
            done.set()
            thread.join(30)
        assert not killer_error, killer_error
        runs = read_marks(tmp_path)
        interrupted = sum(held for _, held in kills)
        ran = len(runs)
        duplicates = sum(runs.values()) - ran
        lost = TASKS - len(runs.keys() & {str(i) for i in range(TASKS)})
        # reclaim.lua counts, per consumer, the deliveries taken from it (the {queue}:reclaimed hash):
        # from a live worker, only because it failed to renew a lease in time
        lease_losses = sum(taken_from_live) + sum(_reclaimed_from(client, keys.reclaimed, n) for n in live)
        summary = (
            f"{TASKS:,} tasks, {len(kills)} SIGKILLs ({interrupted:,} deliveries held by killed "
            f"workers), {ran:,} ran, {lost} lost, {duplicates:,} duplicates, {lease_losses} leases "
            f"lost by live workers; enqueue {enqueue_s:.1f} s, drain {drain_s:.1f} s "
            f"({TASKS / drain_s:,.0f} tasks/s)"
        )
        print(summary)
        assert lost == 0, f"{lost} tasks never ran"
        assert ran == TASKS  # nothing ran that was not sent
        assert len(kills) >= 3, f"only {len(kills)} kills happened while tasks remained"
        assert duplicates <= interrupted, summary
        assert lease_losses == 0, summary  # no live worker's task was delivered twice
        assert not any("lease lost" in w.log for w in live.values()), "a live worker warned of a lost lease"
        stats = app.broker.stats("default")
        assert (stats.ready, stats.running, stats.delayed, stats.dead) == (0, 0, 0, 0)
        assert client.xpending(keys.ready, GROUP)["pending"] == 0
        for w in live.values():
            assert w.stop() == 0
        app.close()
        client.close()
    reliability.record(
        f"Soak: {TASKS:,} tasks, {WORKERS} asyncio worker processes (-c {CONCURRENCY}), one killed "
        f"with SIGKILL every 0.8-2 s and replaced (lease {LEASE_S:g} s, tasks {TASK_S * 1000:g} ms)",
        "every task ran at least once; duplicates at most the deliveries the killed workers held "
        "(read from XPENDING right after each kill); no delivery taken from a live worker; queue empty, "
        "nothing pending or dead-lettered",
        summary,
    )


def _pending_of(client: redis.Redis, stream: str, consumer: str) -> int:
    """How many deliveries ``consumer`` holds (XPENDING summary of the group)."""
    summary = client.xpending(stream, GROUP)
    for entry in summary.get("consumers") or []:
        if entry["name"].decode() == consumer:
            return int(entry["pending"])
    return 0


def _reclaimed_from(client: redis.Redis, key: str, consumer: str) -> int:
    value = client.hget(key, consumer)
    return int(value) if value is not None else 0
