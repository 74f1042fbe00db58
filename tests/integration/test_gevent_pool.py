"""``-P gevent`` with real worker processes (``celeriac worker`` patches before anything is imported).

Tasks are the sync ones of tests/integration/apps.py, unchanged: the choice of pool changes no task
code. Hundreds of them block at once (in ``time.sleep`` or in a socket read); limits, autoscale,
shutdowns and recycling behave as with the other in-process pools (and a hard limit or a cold
shutdown really ends the greenlet).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from celeriac import Celeriac, TimeLimitExceeded
from celeriac.canvas import Signature

from .conftest import REPO, eventually, take

pytest.importorskip("gevent")  # the test extra installs it; without it these tests cannot run

pytestmark = pytest.mark.redis


def fields(producer: Celeriac) -> dict[str, str]:
    workers = producer.broker.workers()
    return workers[0].fields if workers else {}


def test_hundreds_of_blocking_sleeps_run_at_once(cli_worker: Any, producer: Celeriac) -> None:
    cli_worker("-P", "gevent", "-c", "200")
    started = time.monotonic()
    results = producer.send_many([Signature("itest.nap", (f"t{i}", 0.2), app=producer) for i in range(200)])
    assert [result.get(timeout=30) for result in results] == [f"t{i}" for i in range(200)]
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"200 sleeps of 0.2 s took {elapsed:.1f} s (40 s one at a time)"


def test_hundreds_of_tasks_block_in_socket_reads_at_once(
    cli_worker: Any, producer: Celeriac, r: redis.Redis
) -> None:
    # 100: the tasks module's redis-py client holds at most 100 connections (its pool's default)
    cli_worker("-P", "gevent", "-c", "100")
    producer.send_many([Signature("itest.wait_for_go", (f"g{i}",), app=producer) for i in range(100)])
    assert len(take(r, "test:started", 100)) == 100  # all blocked in BLPOP together, none finished
    assert r.llen("test:finished") == 0
    # the first heartbeat may land after the tasks started (it is published once the fetcher runs)
    eventually(lambda: fields(producer).get("pool") == "gevent")
    r.rpush("test:go", *["go"] * 100)
    assert len(take(r, "test:finished", 100)) == 100


def test_sync_tasks_may_run_event_loops_of_their_own(cli_worker: Any, producer: Celeriac) -> None:
    # asyncio's running loop is kept per greenlet: the worker's loop runs in the same OS thread
    cli_worker("-P", "gevent", "-c", "50")
    started = time.monotonic()
    results = producer.send_many(
        [Signature("itest.run_loop", (f"l{i}", 0.3), app=producer) for i in range(50)]
    )
    assert [r.get(timeout=30) for r in results] == [f"l{i}" for i in range(50)]
    assert time.monotonic() - started < 10  # their loops wait cooperatively too (15 s one at a time)


def test_time_limits_per_task_per_call_and_worker_default(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "gevent", "--time-limit", "0.4", CELERIAC_WORKER_TTL_S="1")
    # the task's own soft limit (0.3 s) raises inside time.sleep, in the greenlet
    assert producer.send_task("itest.soft_sleep").get(timeout=15) == "interrupted"
    # the worker's default hard limit (0.4 s) kills a task that sets none
    with pytest.raises(TimeLimitExceeded, match=r"time limit \(0.4s\) exceeded; its greenlet was killed"):
        producer.send_task("itest.slow", args=("d", 60)).get(timeout=15)
    # a call's own limit wins
    with pytest.raises(TimeLimitExceeded, match=r"\(0.2s\)"):
        producer.send_task("itest.slow", args=("c", 60), time_limit=0.2).get(timeout=15)
    # TimeLimitExceeded follows the task's retry policy: the retry succeeds
    assert producer.send_task("itest.hard_then_ok").get(timeout=15) == 1
    # the killed greenlets really ended (none abandoned, none running)
    eventually(lambda: (fields(producer).get("greenlets"), fields(producer).get("abandoned")) == ("0", "0"))
    assert "pool gevent cannot enforce" not in w.log


def test_a_task_that_does_not_yield_is_reported(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "gevent")
    assert producer.send_task("itest.spin", args=(1.5,)).get(timeout=15) == "spun"
    w.wait_log("gevent: no greenlet could run for")
    assert producer.send_task("itest.nap", args=("after", 0.0)).get(timeout=15) == "after"


def test_autoscale_grows_and_shrinks(cli_worker: Any, producer: Celeriac, r: redis.Redis) -> None:
    w = cli_worker(
        "-P", "gevent", "--autoscale", "40,2", "--autoscale-idle", "0.5", CELERIAC_WORKER_TTL_S="1"
    )
    producer.send_many([Signature("itest.wait_for_go", (f"a{i}",), app=producer) for i in range(40)])
    assert len(take(r, "test:started", 40)) == 40  # 40 at once: grown from 2 to 40 slots
    eventually(lambda: fields(producer).get("concurrency") == "40")
    r.rpush("test:go", *["go"] * 40)
    assert len(take(r, "test:finished", 40)) == 40
    w.wait_log("-> 2 slots")


def test_warm_shutdown_lets_the_running_task_finish(
    cli_worker: Any, producer: Celeriac, r: redis.Redis
) -> None:
    w = cli_worker("-P", "gevent")
    result = producer.send_task("itest.slow", args=("w", 0.5))
    assert take(r, "test:started", 1) == ["w"]
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(20) == 0
    assert r.lrange("test:finished", 0, -1) == [b"w"]
    assert result.get(timeout=5) == "w"


def test_cold_shutdown_kills_the_greenlet_and_hands_the_task_back(
    cli_worker: Any, producer: Celeriac, r: redis.Redis
) -> None:
    w = cli_worker("-P", "gevent")
    producer.send_task("itest.wait_for_go", args=("c",))
    assert take(r, "test:started", 1) == ["c"]
    w.proc.send_signal(signal.SIGTERM)
    w.wait_log("warm shutdown")
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(20) == 0
    assert "handed 1 interrupted task(s) back" in w.log
    cli_worker("-P", "gevent")  # another worker runs it again at once
    assert take(r, "test:started", 1) == ["c"]
    r.rpush("test:go", "go")
    assert take(r, "test:finished", 1) == ["c"]  # only the second run finished


def test_the_whole_worker_re_executes_after_max_tasks(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "gevent", "-c", "2", "--max-tasks-per-child", "3")
    assert {producer.send_task("itest.pid").get(timeout=15) for _ in range(3)} == {w.proc.pid}
    w.wait_log("re-executing the worker (ran 3 tasks (max 3))")
    log = w.wait_log("consuming", count=2)  # re-executed through the launcher: patched again
    first, second = re.findall(r"worker (\S+) consuming", log)
    assert first != second
    assert "pool=gevent" in log.split("consuming")[-1] or log.count("pool=gevent") == 2
    assert producer.send_task("itest.pid").get(timeout=15) == w.proc.pid
    assert w.stop() == 0


def test_status_shows_the_gevent_pool(cli_worker: Any, redis_url: str) -> None:
    cli_worker("-P", "gevent", "-c", "300")
    out = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "--broker", redis_url, "status"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},  # the table's full width
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "gevent/300" in out


EMBEDDED = """
from gevent import monkey

monkey.patch_all()  # first, as docs/pools.md says

import sys

from celeriac import Worker
from tests.integration.apps import app

worker = Worker(app, pool="gevent", concurrency=100, burst=True)
worker.start()
print(worker.stats.succeeded)
"""


def test_an_embedded_worker_patched_first(producer: Celeriac, redis_url: str) -> None:
    results = producer.send_many([Signature("itest.nap", (f"e{i}", 0.3), app=producer) for i in range(100)])
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", EMBEDDED],
        cwd=REPO,
        env={**os.environ, "CELERIAC_BROKER_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip() == "100"
    assert time.monotonic() - started < 15  # 100 sleeps of 0.3 s: 30 s one at a time
    assert results[-1].get(timeout=5) == "e99"


def test_revoke_terminate_kills_the_greenlet(cli_worker: Any, producer: Celeriac, r: redis.Redis) -> None:
    from celeriac import TaskRevokedError

    cli_worker("-P", "gevent", "-c", "10")
    victim = producer.send_task("itest.wait_for_go", ("victim",))
    producer.send_task("itest.wait_for_go", ("other",))
    assert sorted(take(r, "test:started", 2)) == ["other", "victim"]
    victim.revoke(terminate=True)
    with pytest.raises(TaskRevokedError):  # (stored by revoke() itself: the worker may not know yet)
        producer.AsyncResult(victim.id).get(timeout=10)
    # the worker settles the victim's delivery once its greenlet is killed: only then is "go" a test
    # of the kill (pushed earlier, the victim could take it before the revocation reached the worker)
    queue = producer.conf.task_default_queue
    eventually(lambda: producer.broker.stats(queue).running == 1)
    r.rpush("test:go", "go", "go")  # the other task goes on; the killed greenlet never finishes
    assert take(r, "test:finished", 1) == ["other"]
    time.sleep(0.5)
    assert r.llen("test:finished") == 0  # take() popped "other"; the victim never got there
