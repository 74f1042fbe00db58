"""Recycling with real worker processes: children of ``-P processes`` are replaced after N tasks, above
a resident size or with age; the other pools recycle the whole worker (drain, then re-exec in place)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from celeriac import Celeriac

pytestmark = pytest.mark.redis


def pid(app: Celeriac) -> int:
    value: int = app.send_task("itest.pid").get(timeout=15)
    return value


def test_a_child_is_replaced_after_max_tasks(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "processes", "-c", "1", "--max-tasks-per-child", "2")
    pids = [pid(producer) for _ in range(6)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]
    assert len(set(pids)) == 3
    # (the log is read by a thread: wait for the lines rather than read what arrived so far)
    w.wait_log("recycling: ran 2 tasks (max 2)", count=2)


def test_a_child_is_replaced_when_it_grew_too_big(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "processes", "-c", "1", "--max-memory-per-child", "80MB")
    first = pid(producer)
    assert pid(producer) == first  # a small child (~30 MiB) stays
    assert producer.send_task("itest.hog", args=(64,)).get(timeout=15) == first  # now ~95 MiB
    assert pid(producer) != first
    w.wait_log("KiB after a task (max 81920 KiB)")


def test_a_child_is_replaced_with_age(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "processes", "-c", "1", "--max-child-age", "0.5")
    first = pid(producer)
    w.wait_log(f"stopping child {first}: recycling")  # idle children age out too
    assert pid(producer) != first


@pytest.mark.parametrize("pool", ["asyncio", "threads"])
def test_the_whole_worker_re_executes_after_max_tasks(cli_worker: Any, producer: Celeriac, pool: str) -> None:
    w = cli_worker("-P", pool, "-c", "2", "--max-tasks-per-child", "3")
    assert {pid(producer) for _ in range(3)} == {w.proc.pid}
    w.wait_log("re-executing the worker (ran 3 tasks (max 3))")
    log = w.wait_log("consuming", count=2)  # the new image is up: same process, a new worker id
    first, second = re.findall(r"worker (\S+) consuming", log)
    assert first != second
    assert pid(producer) == w.proc.pid
    assert "stopped (3 processed)" in w.log  # drained before the re-exec
    assert w.stop() == 0


def test_the_whole_worker_re_executes_when_it_grew_too_big(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "asyncio", "--max-memory-per-child", "120MB")
    assert producer.send_task("itest.hog", args=(128,)).get(timeout=15) == w.proc.pid
    w.wait_log("re-executing the worker (resident memory")
    w.wait_log("consuming", count=2)
    assert pid(producer) == w.proc.pid
    assert w.stop() == 0


def test_the_whole_worker_re_executes_with_age(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "threads", "--max-child-age", "0.5")
    w.wait_log("re-executing the worker (")
    w.wait_log("consuming", count=2)
    assert pid(producer) == w.proc.pid
    assert w.stop() == 0


def test_a_stop_signal_during_a_recycle_drain_exits_instead_of_re_executing(
    cli_worker: Any, producer: Celeriac, redis_url: str
) -> None:
    import signal

    import redis

    r = redis.Redis.from_url(redis_url)
    w = cli_worker("-P", "threads", "-c", "3", "--max-tasks-per-child", "2")
    producer.send_task("itest.wait_for_go", args=("long",))
    assert r.blpop(["test:started"], timeout=10) is not None
    pid(producer), pid(producer)  # the second one reaches the limit: the drain waits for "long"
    w.wait_log("recycling this worker (ran 2 tasks")
    w.proc.send_signal(signal.SIGTERM)
    w.wait_log("will exit instead of re-executing")
    r.rpush("test:go", "go")
    assert w.proc.wait(20) == 0
    assert "re-executing the worker" not in w.log
    assert r.lrange("test:finished", 0, -1) == [b"long"]
    r.close()
