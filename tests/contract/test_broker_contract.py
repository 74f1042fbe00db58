"""The broker contract, checked identically on the memory broker and the Redis broker."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from celeriac.broker.base import Broker, Delivery, Enqueue, Settlement

from .conftest import BrokerEnv

Q = "q"
LEASE_S = 0.2
LEASE_MS = int(LEASE_S * 1000)


def datas(deliveries: list[Delivery]) -> list[bytes]:
    return [d.data for d in deliveries]


async def promote_when_due(env: BrokerEnv, queue: str = Q, max_rounds: int = 50) -> None:
    """Let time pass until every delayed message of ``queue`` is promoted."""
    for _ in range(max_rounds):
        wait_s = await env.broker.promote(queue)
        if wait_s is None:
            return
        await env.elapse(wait_s)
    raise AssertionError("delayed messages were never promoted")


async def make_dead_letters(env: BrokerEnv, reasons: list[str]) -> list[Delivery]:
    b = env.broker
    b.enqueue_many([Enqueue(Q, f"m{i}".encode()) for i in range(len(reasons))])
    got = await b.fetch([Q], "c1", len(reasons), 0)
    assert len(got) == len(reasons)
    settlements = [Settlement(d, "dead", d.data, reason=r) for d, r in zip(got, reasons, strict=True)]
    assert await b.settle("c1", settlements) == []
    return got


async def drain_wakeups(b: Broker, queues: list[str]) -> None:
    """Consume wake-ups already buffered (and Redis subscribe confirmations) until a wait times out."""
    for _ in range(20):
        start = time.monotonic()
        await b.wait_wake(queues, 0.03)
        if time.monotonic() - start >= 0.025:
            return
    raise AssertionError("wake-ups never stopped")


# ---- enqueue and fetch ---------------------------------------------------------------------------
async def test_fetch_is_fifo_and_leases_once(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"m0"))
    b.enqueue_many([Enqueue(Q, f"m{i}".encode()) for i in range(1, 5)])

    first = await b.fetch([Q], "c1", 3, 0)
    second = await b.fetch([Q], "c2", 10, 0)

    assert datas(first) == [b"m0", b"m1", b"m2"]
    assert datas(second) == [b"m3", b"m4"]
    assert all(d.queue == Q and d.deliveries == 1 for d in first + second)
    assert len({d.entry_id for d in first + second}) == 5
    assert await b.fetch([Q], "c1", 10, 0) == []


async def test_fetch_takes_queues_in_priority_order(env: BrokerEnv) -> None:
    queues = ["high", "mid", "low"]
    b = await env.open(*queues)
    b.enqueue_many([Enqueue("low", b"l1"), Enqueue("low", b"l2"), Enqueue("mid", b"m1")])
    b.enqueue_many([Enqueue("high", b"h1"), Enqueue("high", b"h2")])

    assert datas(await b.fetch(queues, "c1", 3, 0)) == [b"h1", b"h2", b"m1"]
    assert [d.queue for d in await b.fetch(queues, "c1", 10, 0)] == ["low", "low"]

    b.enqueue_many([Enqueue("low", b"l3"), Enqueue("high", b"h3")])
    assert datas(await b.fetch(queues, "c1", 1, 0)) == [b"h3"]
    assert datas(await b.fetch(queues, "c1", 1, 0)) == [b"l3"]


async def test_blocking_fetch_times_out_empty(env: BrokerEnv) -> None:
    b = await env.open(Q)
    start = time.monotonic()
    assert await b.fetch([Q], "c1", 5, 100) == []
    assert 0.08 <= time.monotonic() - start < 2.0


async def test_blocking_fetch_wakes_on_enqueue_from_another_thread(env: BrokerEnv) -> None:
    b = await env.open(Q)
    start = time.monotonic()
    fetch = asyncio.create_task(b.fetch([Q], "c1", 5, 10_000))
    await env.wait_blocked_fetch()
    await asyncio.to_thread(b.enqueue, Enqueue(Q, b"wake"))

    got = await asyncio.wait_for(fetch, 5)

    assert datas(got) == [b"wake"]
    assert time.monotonic() - start < 5.0  # woken, not timed out after 10 s


async def test_blocking_fetch_on_several_queues_returns_the_first_arrival(env: BrokerEnv) -> None:
    b = await env.open("high", "low")
    fetch = asyncio.create_task(b.fetch(["high", "low"], "c1", 5, 10_000))
    await env.wait_blocked_fetch()
    await asyncio.to_thread(b.enqueue, Enqueue("low", b"l1"))

    got = await asyncio.wait_for(fetch, 5)

    assert [(d.queue, d.data) for d in got] == [("low", b"l1")]


async def test_concurrent_producers_each_message_delivered_once_in_order(env: BrokerEnv) -> None:
    b = await env.open(Q)
    producers, per_producer = 4, 100
    go = threading.Event()

    def produce(p: int) -> None:
        go.wait()
        for i in range(per_producer):
            b.enqueue(Enqueue(Q, f"{p}:{i}".encode()))

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    go.set()
    received: list[bytes] = []
    while len(received) < producers * per_producer:
        got = await asyncio.wait_for(b.fetch([Q], "c1", 50, 2_000), 10)
        assert got, "a blocked fetch missed messages enqueued from other threads"
        received += datas(got)
    for t in threads:
        t.join()

    assert len(received) == len(set(received)) == producers * per_producer
    for p in range(producers):
        mine = [int(m.split(b":")[1]) for m in received if m.startswith(f"{p}:".encode())]
        assert mine == list(range(per_producer))


# ---- delayed messages ----------------------------------------------------------------------------
async def test_countdown_message_is_promoted_when_due(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"later", delay_ms=150))
    b.enqueue(Enqueue(Q, b"now"))
    assert (b.stats(Q).ready, b.stats(Q).delayed) == (1, 1)

    wait_s = await b.promote(Q)
    assert wait_s is not None and 0.0 < wait_s <= 0.15
    assert datas(await b.fetch([Q], "c1", 10, 0)) == [b"now"]  # not the delayed one

    await promote_when_due(env)

    got = await b.fetch([Q], "c1", 10, 0)
    assert [(d.data, d.deliveries) for d in got] == [(b"later", 1)]
    assert b.stats(Q).delayed == 0
    assert await b.promote(Q) is None


async def test_eta_messages_are_promoted_in_due_order(env: BrokerEnv) -> None:
    b = await env.open(Q)
    now = env.now_ms()
    b.enqueue_many(
        [
            Enqueue(Q, b"third", eta_ms=now + 150),
            Enqueue(Q, b"first", eta_ms=now + 50),
            Enqueue(Q, b"second", eta_ms=now + 100),
        ]
    )
    b.enqueue(Enqueue(Q, b"past", eta_ms=now - 1_000))

    await b.promote(Q)
    assert datas(await b.fetch([Q], "c1", 10, 0)) == [b"past"]

    await promote_when_due(env)
    assert datas(await b.fetch([Q], "c1", 10, 0)) == [b"first", b"second", b"third"]


async def test_wait_wake_returns_when_a_new_earliest_message_is_parked(env: BrokerEnv) -> None:
    b = await env.open(Q)
    await drain_wakeups(b, [Q])

    b.enqueue(Enqueue(Q, b"a", delay_ms=60_000))  # the first delayed message: a new earliest
    await asyncio.wait_for(b.wait_wake([Q], 10), 5)  # buffered since the enqueue

    b.enqueue(Enqueue(Q, b"b", delay_ms=120_000))  # later than the head: nobody needs to wake
    start = time.monotonic()
    await b.wait_wake([Q], 0.2)
    assert time.monotonic() - start >= 0.15

    # a scheduler already waiting is woken by an earlier message sent from another thread
    waiter = asyncio.create_task(b.wait_wake([Q], 10))
    await asyncio.to_thread(b.enqueue, Enqueue(Q, b"c", delay_ms=30_000))
    await asyncio.wait_for(waiter, 5)

    # and by a retry that becomes the earliest
    await drain_wakeups(b, [Q])
    b.enqueue(Enqueue(Q, b"run"))
    (d,) = await b.fetch([Q], "c1", 1, 0)
    assert await b.settle("c1", [Settlement(d, "retry", b"again", delay_ms=1_000)]) == []
    await asyncio.wait_for(b.wait_wake([Q], 10), 5)


# ---- settle ------------------------------------------------------------------------------------
async def test_settle_ack_removes_the_message_for_good(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue_many([Enqueue(Q, b"a"), Enqueue(Q, b"b")])
    got = await b.fetch([Q], "c1", 10, 0)

    assert await b.settle("c1", [Settlement(d) for d in got]) == []

    s = b.stats(Q)
    assert (s.ready, s.running, s.delayed, s.dead) == (0, 0, 0, 0)
    await env.elapse(LEASE_S)
    assert await b.reclaim(Q, "c2", 10, LEASE_MS, 5) == ([], 0)
    assert await b.fetch([Q], "c1", 10, 0) == []


async def test_settle_retry_parks_the_new_message_until_due(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"v1"))
    (d,) = await b.fetch([Q], "c1", 1, 0)

    assert await b.settle("c1", [Settlement(d, "retry", b"v2", delay_ms=100)]) == []
    s = b.stats(Q)
    assert (s.ready, s.running, s.delayed) == (0, 0, 1)
    assert await b.fetch([Q], "c1", 1, 0) == []

    await promote_when_due(env)
    (again,) = await b.fetch([Q], "c1", 1, 0)
    assert (again.data, again.deliveries) == (b"v2", 1)
    assert again.entry_id != d.entry_id


async def test_settle_retry_with_eta(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"v1"))
    (d,) = await b.fetch([Q], "c1", 1, 0)

    await b.settle("c1", [Settlement(d, "retry", b"v2", eta_ms=env.now_ms() + 80)])
    wait_s = await b.promote(Q)
    assert wait_s is not None and 0.0 < wait_s <= 0.08

    await promote_when_due(env)
    assert datas(await b.fetch([Q], "c1", 1, 0)) == [b"v2"]


async def test_settle_dead_moves_the_message_to_the_dead_letters(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"bad"))
    (d,) = await b.fetch([Q], "c1", 1, 0)
    before = env.now_ms()

    assert await b.settle("c1", [Settlement(d, "dead", d.data, reason="it broke")]) == []

    s = b.stats(Q)
    assert (s.ready, s.running, s.dead) == (0, 0, 1)
    (dl,) = b.dead_letters(Q, 10)
    assert (dl.data, dl.reason) == (b"bad", "it broke")
    assert before - 1_000 <= dl.time_ms <= env.now_ms() + 1_000


async def test_settle_handles_several_queues_in_one_batch(env: BrokerEnv) -> None:
    b = await env.open("q1", "q2")
    b.enqueue_many([Enqueue("q1", b"a"), Enqueue("q2", b"b")])
    a, bb = await b.fetch(["q1", "q2"], "c1", 10, 0)

    fenced = await b.settle("c1", [Settlement(a), Settlement(bb, "dead", bb.data, reason="no")])

    assert fenced == []
    assert (b.stats("q1").running, b.stats("q2").running, b.stats("q2").dead) == (0, 0, 1)


# ---- leases and fencing ------------------------------------------------------------------------
async def test_a_consumer_that_lost_its_lease_cannot_settle_or_extend(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"job"))
    (d,) = await b.fetch([Q], "c1", 1, 0)
    await env.elapse(LEASE_S)

    taken, dead = await b.reclaim(Q, "c2", 10, LEASE_MS, 5)
    assert dead == 0
    assert [(x.entry_id, x.data, x.deliveries) for x in taken] == [(d.entry_id, b"job", 2)]

    assert await b.settle("c1", [Settlement(d)]) == [d]
    assert await b.extend("c1", [d]) == [d]
    assert b.stats(Q).running == 1  # still c2's

    assert await b.settle("c2", [Settlement(taken[0])]) == []
    assert b.stats(Q).running == 0


async def test_a_stale_delivery_count_is_fenced_even_for_the_same_consumer(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"job"))
    (d1,) = await b.fetch([Q], "c1", 1, 0)
    await env.elapse(LEASE_S)
    (d2,), _ = await b.reclaim(Q, "c1", 10, LEASE_MS, 5)
    assert (d2.entry_id, d2.deliveries) == (d1.entry_id, 2)

    assert await b.extend("c1", [d1]) == [d1]
    assert await b.settle("c1", [Settlement(d1)]) == [d1]
    assert await b.settle("c1", [Settlement(d2)]) == []


async def test_extend_renews_only_owned_leases(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"job"))
    (d,) = await b.fetch([Q], "c1", 1, 0)

    assert await b.extend("c2", [d]) == [d]  # not c2's
    await env.elapse(LEASE_S * 0.6)
    assert await b.extend("c1", [d]) == []
    await env.elapse(LEASE_S * 0.6)  # 1.2 leases since the fetch, 0.6 since the renewal
    assert await b.reclaim(Q, "c2", 10, LEASE_MS, 5) == ([], 0)

    await env.elapse(LEASE_S * 0.6)
    taken, _ = await b.reclaim(Q, "c2", 10, LEASE_MS, 5)
    assert [x.entry_id for x in taken] == [d.entry_id]


async def test_reclaim_takes_only_expired_leases_oldest_first_up_to_count(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue_many([Enqueue(Q, f"old{i}".encode()) for i in range(3)])
    old = await b.fetch([Q], "c1", 3, 0)
    await env.elapse(LEASE_S)
    b.enqueue(Enqueue(Q, b"fresh"))
    assert datas(await b.fetch([Q], "c1", 1, 0)) == [b"fresh"]

    first, _ = await b.reclaim(Q, "c2", 2, LEASE_MS, 5)
    rest, _ = await b.reclaim(Q, "c2", 10, LEASE_MS, 5)

    assert datas(first) == [b"old0", b"old1"]
    assert datas(rest) == [b"old2"]  # "fresh" is not expired
    assert {d.entry_id for d in first + rest} == {d.entry_id for d in old}
    assert {(d.data, d.deliveries) for d in await b.pending(Q, "c2")} == {(b"", 2)}
    assert [d.data for d in await b.pending(Q, "c1")] == [b""]


async def test_dead_letter_after_max_deliveries_with_a_reason(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"poison"))
    (_d,) = await b.fetch([Q], "c1", 1, 0)
    await env.elapse(LEASE_S)
    taken, dead = await b.reclaim(Q, "c2", 10, LEASE_MS, 2)
    assert ([x.deliveries for x in taken], dead) == ([2], 0)

    await env.elapse(LEASE_S)
    assert await b.reclaim(Q, "c3", 10, LEASE_MS, 2) == ([], 1)

    s = b.stats(Q)
    assert (s.ready, s.running, s.dead) == (0, 0, 1)
    (dl,) = b.dead_letters(Q, 10)
    assert dl.data == b"poison"
    assert "delivered 2 times" in dl.reason and "max_deliveries=2" in dl.reason
    assert await b.settle("c2", [Settlement(taken[0])]) == [taken[0]]


async def test_pending_lists_the_leases_of_one_consumer(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue_many([Enqueue(Q, b"a"), Enqueue(Q, b"b"), Enqueue(Q, b"c")])
    mine = await b.fetch([Q], "c1", 2, 0)
    await b.fetch([Q], "c2", 1, 0)

    pending = await b.pending(Q, "c1")

    assert [(p.entry_id, p.deliveries, p.data) for p in pending] == [(d.entry_id, 1, b"") for d in mine]
    assert await b.pending(Q, "nobody") == []


# ---- release (shutdown) ------------------------------------------------------------------------
async def test_release_unstarted_requeues_fresh_at_the_tail(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue_many([Enqueue(Q, b"a"), Enqueue(Q, b"b"), Enqueue(Q, b"c")])
    (a,) = await b.fetch([Q], "c1", 1, 0)

    assert await b.release("c1", [a], started=False) == 1

    s = b.stats(Q)
    assert (s.ready, s.running) == (3, 0)
    got = await b.fetch([Q], "c2", 10, 0)
    assert [(d.data, d.deliveries) for d in got] == [(b"b", 1), (b"c", 1), (b"a", 1)]
    assert got[2].entry_id != a.entry_id
    assert await b.settle("c1", [Settlement(a)]) == [a]


async def test_release_interrupted_is_reclaimable_at_once(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"long"))
    (d,) = await b.fetch([Q], "c1", 1, 0)

    assert await b.release("c1", [d], started=True) == 1
    assert b.stats(Q).running == 1  # still leased: the delivery counts toward max_deliveries

    taken, dead = await b.reclaim(Q, "c2", 10, 60_000, 5)  # a long lease: expired anyway
    assert dead == 0
    assert [(x.entry_id, x.data, x.deliveries) for x in taken] == [(d.entry_id, b"long", 2)]


async def test_release_ignores_deliveries_not_owned(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue(Enqueue(Q, b"x"))
    (d,) = await b.fetch([Q], "c1", 1, 0)
    stale = Delivery(d.queue, d.entry_id, d.data, d.deliveries + 1)

    assert await b.release("c2", [d], started=False) == 0
    assert await b.release("c1", [stale], started=True) == 0
    assert await b.release("c2", [d], started=True) == 0
    s = b.stats(Q)
    assert (s.ready, s.running) == (0, 1)
    assert await b.reclaim(Q, "c2", 10, 60_000, 5) == ([], 0)


# ---- stats, dead letters, purge ----------------------------------------------------------------
async def test_stats_count_ready_delayed_running_dead(env: BrokerEnv) -> None:
    b = await env.open(Q)
    assert b.stats("never-used") == type(b.stats(Q))("never-used", 0, 0, 0, 0)
    b.enqueue_many([Enqueue(Q, f"r{i}".encode()) for i in range(4)])
    b.enqueue_many([Enqueue(Q, b"d1", delay_ms=60_000), Enqueue(Q, b"d2", delay_ms=60_000)])
    got = await b.fetch([Q], "c1", 2, 0)
    await b.settle("c1", [Settlement(got[0], "dead", got[0].data, reason="x")])

    s = b.stats(Q)

    assert (s.name, s.ready, s.delayed, s.running, s.dead) == (Q, 2, 2, 1, 1)


async def test_dead_letters_list_replay_and_purge(env: BrokerEnv) -> None:
    b = await env.open(Q)
    await make_dead_letters(env, ["r0", "r1", "r2"])

    dls = b.dead_letters(Q, 10)
    assert [(dl.data, dl.reason) for dl in dls] == [(b"m0", "r0"), (b"m1", "r1"), (b"m2", "r2")]
    assert [dl.reason for dl in b.dead_letters(Q, 2)] == ["r0", "r1"]
    assert len({dl.entry_id for dl in dls}) == 3

    assert b.replay_dead(Q, 1) == 1  # the oldest
    assert (b.stats(Q).dead, b.stats(Q).ready) == (2, 1)
    assert [(d.data, d.deliveries) for d in await b.fetch([Q], "c1", 10, 0)] == [(b"m0", 1)]

    assert b.replay_dead(Q, 10, entry_id=dls[2].entry_id) == 1  # one by id
    assert datas(await b.fetch([Q], "c1", 10, 0)) == [b"m2"]
    assert b.replay_dead(Q, 10, entry_id=dls[2].entry_id) == 0  # already replayed
    assert [dl.reason for dl in b.dead_letters(Q, 10)] == ["r1"]

    assert b.purge_dead(Q) == 1
    assert b.dead_letters(Q, 10) == []
    assert b.purge_dead(Q) == 0
    assert b.replay_dead(Q, 10) == 0


async def test_dead_letters_are_capped_keeping_the_newest(env: BrokerEnv) -> None:
    b = await env.open(Q)
    cap, total = 10, 300  # the env's brokers have dead_letter_max=10
    await make_dead_letters(env, [f"r{i}" for i in range(total)])

    kept = b.dead_letters(Q, 1_000)

    # memory trims exactly; Redis trims whole stream nodes (MAXLEN ~), up to ~100 entries over
    assert cap <= len(kept) <= cap + 100 < total
    assert kept[-1].reason == f"r{total - 1}"
    assert [dl.reason for dl in kept] == [f"r{i}" for i in range(total - len(kept), total)]
    assert b.stats(Q).dead == len(kept)


async def test_purge_deletes_ready_and_delayed_but_not_running(env: BrokerEnv) -> None:
    b = await env.open(Q)
    b.enqueue_many([Enqueue(Q, b"r0"), Enqueue(Q, b"r1"), Enqueue(Q, b"r2")])
    b.enqueue_many([Enqueue(Q, b"d0", delay_ms=50), Enqueue(Q, b"d1", delay_ms=60_000)])
    (running,) = await b.fetch([Q], "c1", 1, 0)

    assert b.purge(Q) == 4

    s = b.stats(Q)
    assert (s.ready, s.delayed, s.running) == (0, 0, 1)
    assert await b.settle("c1", [Settlement(running)]) == []
    await env.elapse(0.06)
    assert await b.promote(Q) is None
    assert await b.fetch([Q], "c1", 10, 0) == []
    assert b.purge(Q) == 0


# ---- liveness ----------------------------------------------------------------------------------
async def test_heartbeat_workers_known_queues_and_ttl(env: BrokerEnv) -> None:
    b = await env.open(Q)
    await b.heartbeat("w1", {"pid": "1", "host": "a"}, 30.0, ["q1", "q2"])
    await b.heartbeat("w2", {"pid": "2"}, 0.2, ["q3"])

    assert {w.worker_id: w.fields for w in b.workers()} == {
        "w1": {"pid": "1", "host": "a"},
        "w2": {"pid": "2"},
    }
    assert b.known_queues() == ["q1", "q2", "q3"]

    await b.heartbeat("w1", {"pid": "9"}, 30.0, ["q1"])  # fields are refreshed, not replaced
    assert {w.worker_id: w.fields for w in b.workers()}["w1"] == {"pid": "9", "host": "a"}

    await env.elapse(0.25)  # w2 stopped heartbeating: its TTL ran out
    assert [w.worker_id for w in b.workers()] == ["w1"]

    await b.unregister("w1")
    assert b.workers() == []
    assert b.known_queues() == ["q1", "q2", "q3"]  # kept: queues outlive their workers


@pytest.mark.parametrize("block_ms", [0, 50])
async def test_fetch_on_an_empty_queue_returns_nothing(env: BrokerEnv, block_ms: int) -> None:
    b = await env.open(Q)
    assert await b.fetch([Q], "c1", 10, block_ms) == []
    assert await b.pending(Q, "c1") == []
