"""Flow control on a real Redis with workers in threads: global and per-worker rate limits, per-key
limits, expiry behind a limit, run-time changes, concurrency limits across workers, queue pause."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from celeriac import Celeriac, ConfigurationError, TaskState
from celeriac.flow.keys import FlowKeys, script
from celeriac.testing import ThreadWorker

from .conftest import take


def make_app(url: str) -> Celeriac:
    app = Celeriac("flow", broker=url)
    r = redis.Redis.from_url(url)

    @app.task(name="flow.limited", rate_limit="20/s")
    def limited(i: int) -> None:
        r.rpush("starts", f"{time.time():.4f}")

    @app.task(name="flow.local", rate_limit="10/s", rate_limit_scope="worker")
    def local(i: int) -> None:
        r.rpush("starts", f"{time.time():.4f}")

    @app.task(name="flow.per_customer", rate_limit="5/s", rate_limit_key=lambda customer, i: customer)
    def per_customer(customer: str, i: int) -> None:
        r.rpush(f"starts:{customer}", f"{time.time():.4f}")

    @app.task(name="flow.plain")
    def plain(token: str) -> None:
        r.rpush("plain", f"{token} {time.time():.4f}")

    @app.task(name="flow.slow_rate", rate_limit="2/s", ignore_result=False)
    def slow_rate(i: int) -> None:
        r.rpush("starts", f"{time.time():.4f}")

    @app.task(name="flow.conc", max_concurrency=3)
    async def conc(i: int) -> None:
        now = r.incr("running")
        r.rpush("peaks", now)
        await asyncio.sleep(0.1)
        r.decr("running")
        r.rpush("done", i)

    @app.task(name="flow.conc_key", max_concurrency=1, concurrency_key=lambda account, i: account)
    async def conc_key(account: str, i: int) -> None:
        now = r.incr(f"running:{account}")
        r.rpush(f"peaks:{account}", now)
        await asyncio.sleep(0.05)
        r.decr(f"running:{account}")
        r.rpush("done", f"{account}{i}")

    return app


def starts(r: redis.Redis, key: str = "starts") -> list[float]:
    return sorted(float(x) for x in r.lrange(key, 0, -1))


def wait_len(r: redis.Redis, key: str, n: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while r.llen(key) < n:
        assert time.monotonic() < deadline, f"{key}: {r.llen(key)} of {n}"
        time.sleep(0.02)


@pytest.fixture
def workers(redis_url: str) -> Any:
    started: list[ThreadWorker] = []

    def start(app: Celeriac, n: int = 1, **options: Any) -> list[ThreadWorker]:
        for _ in range(n):
            started.append(ThreadWorker(app, **options).start())
        return started[-n:]

    yield start
    for w in started:
        w.stop(cold=True)


def test_rate_limit_is_global_across_workers_and_evenly_spaced(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    app = make_app(redis_url)
    ws = workers(app, 3)
    for i in range(40):
        app.tasks["flow.limited"].delay(i)
    wait_len(r, "starts", 40)
    t = starts(r)
    span = t[-1] - t[0]
    assert 39 / 20 * 0.9 <= span <= 39 / 20 * 1.25, span  # 20/s for all three workers together
    # evenly spaced, no burst: a 50 ms grid; a start may come up to 100 ms late (then a late one asks
    # again), so any 1 s holds at most 20 + 2 starts
    assert max(sum(1 for x in t if a <= x < a + 1) for a in t) <= 22
    assert sum(w.worker.flow.deferred for w in ws) >= 35  # handed back, not held in a slot


def test_worker_scope_is_celerys_per_worker_meaning(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    app = make_app(redis_url)
    workers(app, 2, concurrency=10)
    for i in range(30):
        app.tasks["flow.local"].delay(i)
    wait_len(r, "starts", 30)
    t = starts(r)
    # 10/s per worker, two workers: faster than 10/s, never faster than 20/s
    assert 29 / 20 * 0.85 <= t[-1] - t[0] <= 29 / 10 * 0.9


def test_per_key_limits_are_independent(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    app = make_app(redis_url)
    workers(app, 2)
    for i in range(10):
        app.tasks["flow.per_customer"].delay("acme", i)
        app.tasks["flow.per_customer"].delay("globex", i)
    wait_len(r, "starts:acme", 10)
    wait_len(r, "starts:globex", 10)
    for customer in ("acme", "globex"):
        t = starts(r, f"starts:{customer}")
        assert t[-1] - t[0] >= 9 / 5 * 0.9  # each at 5/s
    both = sorted(starts(r, "starts:acme") + starts(r, "starts:globex"))
    assert both[-1] - both[0] < 9 / 5 * 1.3  # side by side, not one after the other


def test_a_limited_backlog_does_not_delay_an_unlimited_task(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    app = make_app(redis_url)
    workers(app, 1, concurrency=4)
    for i in range(200):
        app.tasks["flow.limited"].delay(i)
    time.sleep(0.2)
    sent = time.time()
    app.tasks["flow.plain"].delay("now")
    _token, ran = take(r, "plain", 1, timeout_s=10)[0].split()
    assert float(ran) - sent < 1.0  # the limited backlog (10 s of work at 20/s) waits in Redis


def test_expired_while_waiting_behind_the_limit_is_revoked_with_a_reason(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    app = make_app(redis_url)
    (w,) = workers(app, 1)
    results = [app.tasks["flow.slow_rate"].apply_async((i,), expires=1.2) for i in range(6)]
    w.wait_outcomes(lambda outs: len(outs) >= 6, timeout_s=20)
    ran = r.llen("starts")
    assert ran == 3  # at 2/s, starts at 0, 0.5 and 1.0 s fit before the expiry; the others never run
    revoked = [res for res in results if res.state == TaskState.REVOKED]
    assert len(revoked) == 3
    with pytest.raises(Exception, match="expired before its turn under rate limit 2/s"):
        revoked[0].get(timeout=1)


def test_a_task_revoked_while_it_waits_gives_its_turn_back(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    """At 2/s, the second of three tasks is revoked while it waits for its turn: it is dropped when
    reached, and gives its turn back at once, so the third does not wait behind it (its turn would
    otherwise hold the line until it counts as lost, 30 s). The line is empty afterwards."""
    app = make_app(redis_url)
    workers(app, 1)
    task = app.tasks["flow.slow_rate"]
    first = task.delay(0)
    wait_len(r, "starts", 1)  # the limiter is busy now: the next two wait in its line
    second, third = task.delay(1), task.delay(2)
    second.revoke()
    assert third.get(timeout=10) is None
    assert first.state == TaskState.SUCCESS and second.state == TaskState.REVOKED
    assert r.llen("starts") == 2
    assert r.zcard(FlowKeys("celeriac").turns("default", "flow.slow_rate")) == 0


def test_expired_while_parked_under_a_concurrency_limit_is_revoked_and_frees_its_slot(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    """Parked behind max_concurrency=1 past their expiry: when a slot frees, each is dropped unrun,
    REVOKED with the reason, and the slot it was handed is freed at once (not after its lease), so
    the next waiting task gets it."""
    app = Celeriac("flow", broker=redis_url, lease_s=60)

    @app.task(name="flow.one_at_a_time", max_concurrency=1, ignore_result=False)
    async def one_at_a_time(i: int, hold: float) -> int:
        r.rpush("ran", i)
        await asyncio.sleep(hold)
        return i

    (w,) = workers(app, 1, concurrency=4)
    first = one_at_a_time.delay(0, 1.5)
    take(r, "ran", 1)
    late = [one_at_a_time.apply_async((i, 0), expires=0.5) for i in (1, 2, 3)]
    last = one_at_a_time.delay(4, 0)  # no expiry: waits behind them, runs when they are dropped
    assert first.get(timeout=20) == 0
    assert last.get(timeout=20) == 4  # within the test: a leaked slot would hold it for the 60 s lease
    assert [int(x) for x in r.lrange("ran", 0, -1)] == [4]  # 0 was popped above; 1-3 never ran
    for res in late:
        assert res.state == TaskState.REVOKED
        with pytest.raises(Exception, match="expired while waiting for a slot under max_concurrency"):
            res.get(timeout=1)
    assert w.worker.flow.parked >= 4


def test_a_flood_of_rate_limited_tasks_starts_in_fifo_order(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    """2,000 rate-limited tasks sent at once, and a stall of the worker's loop in the middle of the
    flood: tasks whose reserved time comes during the stall (or while the rest of the flood is still
    being handed back ahead of them in the stream) start late. They keep their place (the line slips,
    rate_check.lua) instead of asking for a new time at the back: the start order is the send order.
    No timing asserted: the order of starts is recorded by the tasks themselves."""
    app = Celeriac("flow", broker=redis_url)

    @app.task(name="flow.fifo", rate_limit="500/s")
    async def fifo(i: int) -> None:
        r.rpush("order", i)  # synchronous on purpose: recorded in the order the worker starts them

    @app.task(name="flow.stall")
    async def stall() -> None:
        time.sleep(0.5)  # noqa: ASYNC251 - blocks the worker's loop: reservations due meanwhile are late

    sigs = [fifo.s(i) for i in range(300)] + [stall.s()] + [fifo.s(i) for i in range(300, 2000)]
    app.send_many(sigs)
    (w,) = workers(app, 1, concurrency=50)
    wait_len(r, "order", 2000, timeout_s=120)
    order = [int(x) for x in r.lrange("order", 0, -1)]
    assert order == list(range(2000))
    assert w.worker.flow.late > 0  # the late path ran: some tasks were handed back again, in line
    assert w.worker.flow.deferred > 1000  # and the flood waited in Redis, not in worker slots


def test_a_rate_limiters_line_keeps_its_order_when_its_head_is_late(r: redis.Redis) -> None:
    """rate_check.lua on a line of three turns (200 ms apart) all in the past, as after a stall: the
    second, reached first, waits behind the head; the head starts and slips the line by its lateness,
    so the others keep their order and spacing (due again after now); a task
    whose turn is gone (it started once, and came back after its worker died) takes a new turn at the
    back and never slips the line. Times are the Redis clock's: nothing waits."""
    keys = FlowKeys("celeriac")
    k = [keys.rate("q", "t"), keys.shift("q", "t"), keys.turns("q", "t")]
    interval, tolerance = 200_000, 100_000
    sec, us = r.time()
    now = sec * 1_000_000 + us
    a, b, c = now - 1_000_000, now - 800_000, now - 600_000
    for turn in (a, b, c):
        r.zadd(k[2], {str(turn): turn})
    r.set(k[0], c + interval)

    def check(*turns: int) -> list[Any]:
        args: list[Any] = [interval, tolerance, 5_000, 30_000_000, 1_000_000]
        for turn in turns:
            args += [turn, 0]
        return [v.decode() if isinstance(v, bytes) else v for v in script("rate_check")(r, k, args)]

    (behind,) = check(b)
    assert behind.startswith("h") and int(behind[1:]) > now  # sent round behind the head
    assert check(a) == [0]  # the head starts, late
    shift = int(r.get(k[1]) or 0)
    assert 1_000_000 <= shift <= 1_500_000  # its lateness (the milliseconds since `now` included)
    early_b, early_c = check(b, c)
    assert early_b == f"e{b + shift}" and early_c == f"e{c + shift}"  # order and spacing kept
    assert int(early_b[1:]) > now
    (new,) = check(a)  # the head again (a redelivery): its turn is gone
    due, turn = (int(x) for x in new[1:].split(":"))
    assert turn > c and due == c + interval + shift  # a new turn, at the back
    assert int(r.get(k[1]) or 0) == shift  # the line did not slip again
    assert r.zrange(k[2], 0, -1) == [str(b).encode(), str(c).encode(), str(turn).encode()]


def test_rate_limit_changed_at_run_time(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    app = make_app(redis_url)
    (w,) = workers(app, 1)
    app.control.rate_limit("flow.plain", "5/s")
    w.worker.flow.overrides.clear()
    asyncio.run_coroutine_threadsafe(w.worker.flow.refresh(["default"]), w.worker.run_state.loop).result(5)
    assert app.control.rate_limits() == {"flow.plain": "5/s"}
    for i in range(10):
        app.tasks["flow.plain"].delay(str(i))
    wait_len(r, "plain", 10)
    t = sorted(float(x.split()[1]) for x in r.lrange("plain", 0, -1))
    assert t[-1] - t[0] >= 9 / 5 * 0.9
    app.control.rate_limit("flow.plain", "default")
    assert app.control.rate_limits() == {}
    with pytest.raises(ConfigurationError, match=r"rate_limit of flow\.plain"):
        app.control.rate_limit("flow.plain", "fast")


def test_concurrency_limit_holds_across_workers(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    app = make_app(redis_url)
    workers(app, 3)
    for i in range(30):
        app.tasks["flow.conc"].delay(i)
    wait_len(r, "done", 30)
    peaks = [int(x) for x in r.lrange("peaks", 0, -1)]
    assert max(peaks) == 3 and len(peaks) == 30


def test_concurrency_limit_per_key(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    app = make_app(redis_url)
    workers(app, 2)
    for i in range(8):
        app.tasks["flow.conc_key"].delay("a", i)
        app.tasks["flow.conc_key"].delay("b", i)
    wait_len(r, "done", 16)
    for account in ("a", "b"):
        assert max(int(x) for x in r.lrange(f"peaks:{account}", 0, -1)) == 1


def test_paused_queue_accepts_sends_and_workers_take_nothing(
    redis_url: str, r: redis.Redis, workers: Callable[..., list[ThreadWorker]]
) -> None:
    app = make_app(redis_url)
    (w,) = workers(app, 1, queues=["default", "io"])
    assert app.control.pause_queue("io") is True and app.control.pause_queue("io") is False
    asyncio.run_coroutine_threadsafe(
        w.worker.flow.refresh(["default", "io"]), w.worker.run_state.loop
    ).result(5)
    app.tasks["flow.plain"].apply_async(("io",), queue="io")
    app.tasks["flow.plain"].delay("default")
    assert take(r, "plain", 1)[0].startswith("default ")
    time.sleep(1.0)  # a read that began before the pause hands what it took back
    assert r.llen("plain") == 0 and app.broker.stats("io").ready == 1
    assert app.control.paused_queues() == {"io"}
    assert app.control.resume_queue("io") is True
    assert take(r, "plain", 1, timeout_s=15)[0].startswith("io ")  # within a refresh (5 s) + a read


def test_bad_flow_options_fail_at_decoration(redis_url: str) -> None:
    app = Celeriac(broker=redis_url)
    for options, problem in (
        ({"rate_limit": "10/x"}, "rate_limit"),
        ({"rate_limit": -1}, "positive"),
        ({"rate_limit_scope": "cluster"}, "rate_limit_scope"),
        ({"rate_limit_key": "customer"}, "callable"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 2.5}, "max_concurrency"),
    ):
        with pytest.raises(ConfigurationError, match=problem):
            app.task(name=f"bad.{problem}", **options)(lambda: None)
