"""``-P processes`` with real worker processes on a real Redis: tasks run in children, limits kill and
replace them, a dead child's task runs again (or fails, when it opted out of redelivery), and both
shutdowns leave nothing behind."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import redis

from celeriac import Celeriac, SoftTimeLimitExceeded, TaskError, TimeLimitExceeded, WorkerLostError

from .conftest import eventually, take

pytestmark = pytest.mark.redis


def alive(pid: int) -> bool:
    """True while the process runs (a killed one that nobody reaped yet, a zombie, is not alive)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def heartbeat(app: Celeriac) -> dict[str, str]:
    (info,) = app.broker.workers()
    return info.fields


def test_sync_and_async_tasks_run_in_children(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "processes", "-c", "2")
    pids = {producer.send_task("itest.pid").get(timeout=10) for _ in range(20)}
    assert w.proc.pid not in pids
    assert 1 <= len(pids) <= 2
    assert producer.send_task("itest.apid").get(timeout=10) in pids  # async tasks: asyncio.run in a child
    fields = heartbeat(producer)
    assert (fields["pool"], fields["concurrency"], fields["children"]) == ("processes", "2", "2")
    assert w.stop() == 0
    for child in pids:
        eventually(lambda child=child: not alive(child))  # children end with the worker


def test_soft_limit_interrupts_a_blocking_sleep_in_a_child(cli_worker: Any, producer: Celeriac) -> None:
    cli_worker("-P", "processes", "-c", "1")
    assert producer.send_task("itest.soft_sleep").get(timeout=10) == "interrupted"  # time.sleep(60)
    assert producer.send_task("itest.async_soft").get(timeout=10) == "interrupted"


def test_hard_limit_kills_and_replaces_the_child(cli_worker: Any, producer: Celeriac, r: redis.Redis) -> None:
    w = cli_worker("-P", "processes", "-c", "1")
    with pytest.raises(TimeLimitExceeded, match="its child process was killed"):
        producer.send_task("itest.hard_sleep", args=("h",)).get(timeout=10)
    (started,) = take(r, "test:started", 1)
    killed = int(started.split(":")[1])
    eventually(lambda: not alive(killed))
    replacement = producer.send_task("itest.pid").get(timeout=10)
    assert replacement != killed
    assert f"killing child {killed}: time limit (0.3s)" in w.log
    # a hard-limited task follows its retry policy: the retry runs in a new child and succeeds
    assert producer.send_task("itest.hard_then_ok").get(timeout=10) == 1


def test_worker_default_limits_apply_to_tasks_without_their_own(cli_worker: Any, producer: Celeriac) -> None:
    cli_worker("-P", "processes", "-c", "1", "--time-limit", "0.3")
    with pytest.raises(TimeLimitExceeded):
        producer.send_task("itest.slow", args=("x", 30)).get(timeout=10)
    # per call wins over the worker default
    with pytest.raises(SoftTimeLimitExceeded):
        producer.send_task("itest.slow", args=("y", 30), soft_time_limit=0.1, time_limit=5).get(timeout=10)


def test_a_dead_childs_task_runs_again_and_the_child_is_replaced(
    cli_worker: Any, producer: Celeriac, r: redis.Redis
) -> None:
    w = cli_worker("-P", "processes", "-c", "2", CELERIAC_WORKER_TTL_S="1")  # heartbeat every 0.33 s
    result = producer.send_task("itest.crash_once", args=("c1",))
    assert result.get(timeout=15) == "c1"  # the first run was SIGKILLed with its child
    assert take(r, "test:started", 2) == ["c1", "c1"]
    log = w.wait_log("ended: killed by SIGKILL")
    assert "died while running itest.crash_once" in log and "handing it back" in log
    eventually(lambda: heartbeat(producer)["lost"] == "1")
    assert heartbeat(producer)["children"] == "2"
    stats = producer.broker.stats("default")
    assert (stats.ready, stats.running, stats.dead) == (0, 0, 0)


def test_a_dead_childs_at_most_once_task_fails_with_worker_lost_error(
    cli_worker: Any, producer: Celeriac, r: redis.Redis
) -> None:
    cli_worker("-P", "processes", "-c", "1")
    with pytest.raises(WorkerLostError, match="died"):
        producer.send_task("itest.crash_at_most_once", args=("once",)).get(timeout=10)
    assert producer.send_task("itest.pid").get(timeout=10)  # a new child serves
    assert r.lrange("test:started", 0, -1) == [b"once"]  # never run again


def test_a_task_that_kills_every_child_is_dead_lettered(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "processes", "-c", "1", CELERIAC_LEASE_S="0.5", CELERIAC_MAX_DELIVERIES="3")
    producer.send_task("itest.suicide")
    w.wait_log("dead-lettered after max_deliveries", timeout_s=20)
    (entry,) = producer.broker.dead_letters("default", 10)
    assert "delivered 3 times without an outcome" in entry.reason
    assert producer.send_task("itest.pid").get(timeout=10)  # the worker is fine
    assert w.proc.poll() is None


def test_warm_shutdown_lets_the_running_task_finish(
    cli_worker: Any, producer: Celeriac, r: redis.Redis
) -> None:
    w = cli_worker("-P", "processes", "-c", "1")
    producer.send_task("itest.wait_for_go", args=("warm",))
    assert take(r, "test:started", 1) == ["warm"]
    w.proc.send_signal(signal.SIGTERM)
    w.wait_log("warm shutdown")
    r.rpush("test:go", "go")  # the task finishes during the warm shutdown
    assert w.proc.wait(20) == 0
    assert take(r, "test:finished", 1) == ["warm"]
    stats = producer.broker.stats("default")
    assert (stats.ready, stats.running, stats.dead) == (0, 0, 0)


def test_cold_shutdown_kills_the_children_and_hands_the_task_back(
    cli_worker: Any, producer: Celeriac, r: redis.Redis
) -> None:
    w = cli_worker("-P", "processes", "-c", "1", CELERIAC_LEASE_S="30")  # no lease expiry helps here
    producer.send_task("itest.wait_for_go", args=("cold",))
    assert take(r, "test:started", 1) == ["cold"]
    pid = producer.send_task("itest.pid")  # queued behind: handed back unstarted
    w.proc.send_signal(signal.SIGTERM)
    w.wait_log("warm shutdown")
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(20) == 0
    assert "killing child" in w.log and "handed back (shutdown)" in w.log
    second = cli_worker("-P", "processes", "-c", "2")
    assert take(r, "test:started", 1, timeout_s=15) == ["cold"]  # at once, not after 30 s
    assert pid.get(timeout=10)
    r.rpush("test:go", "go")
    assert take(r, "test:finished", 1) == ["cold"]
    assert second.stop() == 0


def test_kill_9_of_the_worker_takes_its_children_down(
    cli_worker: Any, producer: Celeriac, r: redis.Redis
) -> None:
    w = cli_worker("-P", "processes", "-c", "1")
    producer.send_task("itest.hard_sleep", args=("orphan",), time_limit=60)
    (started,) = take(r, "test:started", 1)
    child = int(started.split(":")[1])
    w.proc.kill()
    w.proc.wait()
    # nothing keeps running a task that another worker will run again (Linux: PR_SET_PDEATHSIG)
    eventually(lambda: not alive(child))


def test_async_hard_limit_kills_the_child(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "processes", "-c", "1")
    with pytest.raises(TimeLimitExceeded):
        producer.send_task("itest.async_hard").get(timeout=10)
    assert "killing child" in w.log
    assert producer.send_task("itest.apid").get(timeout=10)


def test_retries_errors_and_tracebacks_cross_the_process_boundary(
    cli_worker: Any, producer: Celeriac
) -> None:
    cli_worker("-P", "processes", "-c", "1")
    assert producer.send_task("itest.retry_once").get(timeout=10) == 1  # self.retry() in a child
    with pytest.raises(TaskError, match="from the child") as info:  # not importable here: by name
        producer.send_task("itest.custom_error").get(timeout=10)
    assert info.value.exc_type == "tests.integration.apps.CustomError"
    assert "in custom_error" in (info.value.remote_traceback or "")  # the child's own traceback
    with pytest.raises(TypeError, match="cannot be sent back from the child process"):
        producer.send_task("itest.unpicklable").get(timeout=10)


def test_the_pool_recovers_when_its_fork_server_is_killed(cli_worker: Any, producer: Celeriac) -> None:
    w = cli_worker("-P", "processes", "-c", "2")
    before = {producer.send_task("itest.pid").get(timeout=10) for _ in range(4)}
    with open(f"/proc/{w.proc.pid}/task/{w.proc.pid}/children") as children:
        (fork_server,) = (int(pid) for pid in children.read().split())
    os.kill(fork_server, signal.SIGKILL)  # its children die with it (PR_SET_PDEATHSIG)
    w.wait_log("starting a new fork server")
    after = {producer.send_task("itest.pid").get(timeout=10) for _ in range(4)}
    assert not before & after
    for pid in before:
        eventually(lambda pid=pid: not alive(pid))
