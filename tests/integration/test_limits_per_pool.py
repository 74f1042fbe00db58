"""Every pool x every kind of code against its documented time-limit behaviour (docs/pools.md, "Time limits").

Real ``celeriac worker`` processes of tests/integration/apps.py, one per pool. Each run works for
``WORK_S`` under a ``LIMIT_S`` limit: an *interrupted* run ends well before ``WORK_S``; one that the
pool cannot interrupt runs to its end. What cannot be interrupted is said at start-up.

Also the regression test of the gevent stuck task (issue 10): a CPU-bound task that kept gevent's hub
busy past both limits of a coroutine left that coroutine's delivery owned, its lease renewed forever,
run by nothing.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from celeriac import Celeriac, TimeLimitExceeded
from celeriac._redis.keys import GROUP, KeySchema

from .conftest import CliWorker

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WORK_S = 3.0
LIMIT_S = 0.3
INTERRUPTED_S = 2.0  # an interrupted run ends before this (the work alone takes WORK_S)
KINDS = ("sleep", "cpu", "async")

#: pool -> kinds of code whose run the soft limit interrupts *at the limit*; the others end first.
#: Threads: the soft limit is raised at the next bytecode, so a blocking sleep ends first (then it is
#: raised). gevent: raised where a greenlet yields, and a CPU loop never does.
SOFT_INTERRUPTS = {
    "asyncio": {"cpu", "async"},
    "threads": {"cpu", "async"},
    "gevent": {"sleep", "async"},
    "processes": {"sleep", "cpu", "async"},
}
#: pool -> kinds whose run fails with TimeLimitExceeded *at* the hard limit; the others fail when
#: they end (gevent: a CPU loop keeps the hub, and every timer, waiting).
HARD_AT_LIMIT = {
    "asyncio": {"sleep", "cpu", "async"},  # the thread is abandoned and runs on
    "threads": {"sleep", "cpu", "async"},
    "gevent": {"sleep", "async"},
    "processes": {"sleep", "cpu", "async"},  # the child is killed
}
#: pool -> what the start-up warning says it cannot do (None: no warning)
CAVEAT = {
    "asyncio": "cannot enforce a hard time limit on sync tasks",
    "threads": "cannot enforce a hard time limit on sync tasks",
    "gevent": "only where they yield to gevent",
    "processes": None,
}


def timed(producer: Celeriac, kind: str, **limit: float) -> tuple[Any, float]:
    name, args = ("itest.awork", ("sleep", WORK_S)) if kind == "async" else ("itest.work", (kind, WORK_S))
    started = time.monotonic()
    result = producer.send_task(name, args=args, **limit)
    try:
        value: Any = result.get(timeout=30)
    except TimeLimitExceeded as exc:
        value = exc
    return value, time.monotonic() - started


@pytest.mark.parametrize("pool", list(SOFT_INTERRUPTS))
def test_each_pool_holds_its_documented_limits_on_each_kind_of_code(
    cli_worker: Any, producer: Celeriac, pool: str
) -> None:
    if pool == "gevent":
        pytest.importorskip("gevent")
    w: CliWorker = cli_worker("-P", pool, "-c", "4", "--time-limit", "60")
    caveat = CAVEAT[pool]
    if caveat is None:
        assert "time limit" not in w.log
    else:
        assert caveat in w.log  # said at start-up, before any task ran
    for kind in KINDS:
        value, elapsed_s = timed(producer, kind, soft_time_limit=LIMIT_S)
        if kind in SOFT_INTERRUPTS[pool]:
            assert (value, elapsed_s < INTERRUPTED_S) == ("soft", True), (pool, kind, value, elapsed_s)
        else:
            assert elapsed_s >= WORK_S, (pool, kind, value, elapsed_s)  # not interrupted: ran to its end
            # threads: the soft limit still lands once the sleep returns; gevent: never in a CPU loop
            assert value == ("soft" if pool in ("asyncio", "threads") else "done"), (pool, kind, value)
    for kind in KINDS:
        value, elapsed_s = timed(producer, kind, time_limit=LIMIT_S)
        assert isinstance(value, TimeLimitExceeded), (pool, kind, value)
        if kind in HARD_AT_LIMIT[pool]:
            assert elapsed_s < INTERRUPTED_S, (pool, kind, elapsed_s)
        else:
            assert elapsed_s >= WORK_S, (pool, kind, elapsed_s)
            assert "gevent interrupts a task only where it yields" in str(value)


def test_gevent_a_hub_blocked_past_every_limit_leaves_no_delivery_owned(
    cli_worker: Any, producer: Celeriac, r: redis.Redis
) -> None:
    """The scenario of issue 10, sent before the worker starts so that one fetch takes all four."""
    pytest.importorskip("gevent")
    results = [
        producer.send_task("itest.work", args=("sleep", 4)),
        producer.send_task("itest.work", args=("cpu", 4)),  # keeps the hub (and every timer) for 4 s
        producer.send_task("itest.awork", args=("sleep", 4)),  # both of its limits pass meanwhile
        producer.send_task("itest.work", args=("sleep", 4), time_limit=1),
    ]
    w = cli_worker("-P", "gevent", "--soft-time-limit", "1", "--time-limit", "2")
    for result in results:  # every run ends, and each failed by its hard limit
        with pytest.raises(TimeLimitExceeded):
            result.get(timeout=15)
    ready = KeySchema("celeriac").queue("default").ready
    assert r.xpending(ready, GROUP)["pending"] == 0  # nothing left owned, nothing renewed
    assert w.stop() == 0
    assert r.xpending(ready, GROUP)["pending"] == 0
    assert "handing it back" not in w.log  # the runs ended properly: the safety net was not needed
