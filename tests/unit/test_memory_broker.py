"""What only the memory broker has: a fake clock, in-process wake-ups, exact caps. The behaviour it
shares with the Redis broker is checked by ``tests/contract``."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from celeriac import Celeriac
from celeriac.broker.base import Enqueue, ResultSettling, Settlement
from celeriac.broker.memory import MemoryBroker, _Waiter
from celeriac.exceptions import BrokerError
from celeriac.testing import FakeClock

Q = "q"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> MemoryBroker:
    b = MemoryBroker(dead_letter_max=3, clock=clock)
    clock.subscribe(b.time_changed)
    return b


async def test_moving_the_fake_clock_wakes_a_sleeping_scheduler(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    await broker.open([Q])
    broker.enqueue(Enqueue(Q, b"in an hour", delay_ms=3_600_000))
    await broker.wait_wake([Q], 0)  # consume the wake-up of the new earliest message
    assert await broker.promote(Q) == 3600.0

    sleeper = asyncio.create_task(broker.wait_wake([Q], 30))
    await asyncio.sleep(0)
    clock.advance(3600)
    await asyncio.wait_for(sleeper, 2)

    assert await broker.promote(Q) is None
    assert [d.data for d in await broker.fetch([Q], "c1", 1, 0)] == [b"in an hour"]


async def test_leases_age_on_the_fake_clock_only(broker: MemoryBroker, clock: FakeClock) -> None:
    await broker.open([Q])
    broker.enqueue(Enqueue(Q, b"x"))
    (d,) = await broker.fetch([Q], "c1", 1, 0)
    await asyncio.sleep(0.02)  # real time does not age a lease
    assert await broker.reclaim(Q, "c2", 1, 10, 5) == ([], 0)

    clock.advance(0.01)
    (again,), _ = await broker.reclaim(Q, "c2", 1, 10, 5)
    assert (again.entry_id, again.deliveries) == (d.entry_id, 2)


async def test_the_same_bytes_parked_twice_are_one_delayed_message(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    # a Redis sorted set keeps one member per value: the second ZADD only moves its due time
    broker.enqueue(Enqueue(Q, b"same", delay_ms=10_000))
    broker.enqueue(Enqueue(Q, b"same", delay_ms=1_000))
    assert broker.stats(Q).delayed == 1

    clock.advance(1)
    assert await broker.promote(Q) is None
    assert [d.data for d in await broker.fetch([Q], "c1", 10, 0)] == [b"same"]


async def test_equal_due_times_promote_in_byte_order(broker: MemoryBroker, clock: FakeClock) -> None:
    eta = clock.time_ms() + 5
    broker.enqueue_many(
        [Enqueue(Q, b"b", eta_ms=eta), Enqueue(Q, b"c", eta_ms=eta), Enqueue(Q, b"a", eta_ms=eta)]
    )
    clock.advance(0.005)
    await broker.promote(Q)
    assert [d.data for d in await broker.fetch([Q], "c1", 10, 0)] == [b"a", b"b", b"c"]


async def test_dead_letters_are_capped_exactly(broker: MemoryBroker) -> None:
    broker.enqueue_many([Enqueue(Q, f"m{i}".encode()) for i in range(5)])
    got = await broker.fetch([Q], "c1", 5, 0)
    await broker.settle("c1", [Settlement(d, "dead", d.data, reason=str(i)) for i, d in enumerate(got)])
    assert [dl.reason for dl in broker.dead_letters(Q, 10)] == ["2", "3", "4"]


async def test_a_cancelled_or_timed_out_fetch_leaves_no_waiter(broker: MemoryBroker) -> None:
    assert await broker.fetch([Q], "c1", 1, 10) == []
    fetch = asyncio.create_task(broker.fetch([Q], "c1", 1, 10_000))
    while not broker._fetchers:
        await asyncio.sleep(0)
    fetch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetch
    assert broker._fetchers == set()
    broker.enqueue(Enqueue(Q, b"still here"))
    assert broker.stats(Q).ready == 1


def test_a_waiter_of_a_closed_loop_is_ignored() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    _Waiter(loop, asyncio.Event(), {Q}).wake()  # does not raise


async def test_a_fetch_blocked_in_another_loop_is_woken_across_threads(broker: MemoryBroker) -> None:
    got: list[bytes] = []
    blocked = threading.Event()

    async def consume() -> None:
        fetch = asyncio.create_task(broker.fetch([Q], "c1", 10, 10_000))
        while not broker._fetchers:
            await asyncio.sleep(0)
        blocked.set()
        got.extend(d.data for d in await fetch)

    thread = threading.Thread(target=lambda: asyncio.run(consume()))
    start = time.monotonic()
    thread.start()
    assert await asyncio.to_thread(blocked.wait, 5)
    broker.enqueue(Enqueue(Q, b"hello"))
    await asyncio.to_thread(thread.join, 5)
    assert got == [b"hello"]
    assert time.monotonic() - start < 5


async def test_wake_ups_are_buffered_per_loop_until_the_last_close(broker: MemoryBroker) -> None:
    await broker.open([Q])
    await broker.open([Q, "other"])  # a second worker on the same loop
    await broker.close()
    broker.enqueue(Enqueue("other", b"x", delay_ms=1_000))
    await asyncio.wait_for(broker.wait_wake(["other"], 10), 2)  # still subscribed, buffered
    await broker.close()
    assert broker._subscribers == {}


async def test_wait_wake_without_open_wakes_only_on_new_wake_ups(broker: MemoryBroker) -> None:
    broker.enqueue(Enqueue(Q, b"before", delay_ms=1_000))  # not buffered: nobody subscribed
    start = time.monotonic()
    await broker.wait_wake([Q], 0.05)
    assert time.monotonic() - start >= 0.04

    sleeper = asyncio.create_task(broker.wait_wake([Q], 10))
    while not broker._transient:
        await asyncio.sleep(0)
    await asyncio.to_thread(broker.enqueue, Enqueue(Q, b"earlier", delay_ms=10))
    await asyncio.wait_for(sleeper, 2)
    assert broker._transient == set()


async def test_messages_are_stored_as_bytes(broker: MemoryBroker) -> None:
    payload = bytearray(b"mutable")
    broker.enqueue(Enqueue(Q, payload))  # type: ignore[arg-type]
    payload[:] = b"changed"
    (d,) = await broker.fetch([Q], "c1", 1, 0)
    assert d.data == b"mutable" and type(d.data) is bytes


async def test_refuses_what_it_cannot_do(broker: MemoryBroker) -> None:
    with pytest.raises(BrokerError):
        broker.replay_dead(Q, 1, entry_id="not-an-id")
    # writing results with the acks is a capability the memory broker does not offer (no
    # settle_with_results): the app never routes results through it
    assert not isinstance(broker, ResultSettling)
    assert not Celeriac("m", broker="memory://", result_backend="memory://").results_travel_with(broker)
    with pytest.raises(ValueError):
        MemoryBroker(dead_letter_max=0)


async def test_known_queues_expire_a_week_after_the_last_heartbeat(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    await broker.heartbeat("w1", {"a": "1"}, 10.0, [Q])
    clock.advance(10.001)
    assert broker.workers() == []
    assert broker.known_queues() == [Q]
    clock.advance(7 * 86_400)
    assert broker.known_queues() == []


async def test_queue_names_lists_every_queue_seen(broker: MemoryBroker) -> None:
    broker.enqueue(Enqueue("b", b"x"))
    await broker.open(["a"])
    assert broker.queue_names() == ["a", "b"]
    await broker.close()
