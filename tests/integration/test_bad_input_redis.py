"""Garbage in a real queue: every bad entry is dead-lettered with a reason, good tasks keep running,
and nothing stays stuck (no ready entry left, no delivery left pending)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import redis

from celeriac import Celeriac
from celeriac.broker.keys import GROUP
from celeriac.message import SIGNED_MESSAGE
from celeriac.testing import ThreadWorker

pytestmark = pytest.mark.redis

SEED = 20_261_122


def garbage(rng: random.Random) -> list[bytes]:
    """Random byte strings, then crafted near-misses of the real format."""
    out = [rng.randbytes(rng.randint(0, 300)) for _ in range(300)]
    out += [bytes([rng.choice([0x94, 0x95, 0x96])]) + rng.randbytes(rng.randint(0, 60)) for _ in range(40)]
    out += [SIGNED_MESSAGE + rng.randbytes(rng.randint(0, 80)) for _ in range(20)]
    uuid = rng.randbytes(16)
    out += [
        b"",
        msgpack.packb([1, uuid, "bad.unknown_task", []]),
        msgpack.packb([2, uuid, "bad.add", [1, 2]]),
        msgpack.packb([1, uuid, "bad.add", "not a list"]),
        msgpack.packb([1, uuid, "bad.add", [1, 2, 3, 4]]),  # wrong arguments
        msgpack.packb([1, uuid, "bad.add", [], {"nope": 1}]),
        msgpack.packb([1, uuid, "bad.add", [1, 2], {}, {"r": -1}]),
        msgpack.packb([1, uuid, "bad.add", [1, 2], {}, {"rx": float("inf")}]),
        msgpack.packb([1, uuid, "bad.add", [1, 2], {}, {"e": 2**64 - 1}]),
        msgpack.packb([1, uuid, "bad.add", b"blob", {}, {"ct": "pickle"}]),
        msgpack.packb({"not": "an array"}),
        b"\x94" * 100_000,
        rng.randbytes(1_100_000),  # larger than max_message_bytes: never sent by celeriac, still read
    ]
    return out


def test_random_bytes_in_a_queue_are_dead_lettered_and_good_tasks_run(
    redis_url: str, thread_worker: Callable[..., ThreadWorker]
) -> None:
    app = Celeriac("bad", broker=redis_url, task_ignore_result=True)
    done: list[int] = []

    @app.task(name="bad.add")
    def add(x: int, y: int) -> None:
        done.append(x + y)

    rng = random.Random(SEED)
    bad = garbage(rng)
    keys = app.broker.keys.queue("default")  # type: ignore[attr-defined]
    r = redis.Redis.from_url(redis_url)
    worker = thread_worker(app, concurrency=20)

    good = 0
    for i, data in enumerate(bad):
        r.xadd(keys.ready, {"m": data})
        if i % 7 == 0:
            add.delay(i, 1)
            good += 1
    for _ in range(5):  # entries without a message field
        r.xadd(keys.ready, {"x": b"no m field"})
    garbage_delayed = [b"delayed-garbage-%d" % i + rng.randbytes(10) for i in range(10)]
    r.zadd(keys.delayed, {m: 0 for m in garbage_delayed})  # due at once: promoted, then refused
    r.publish(keys.wake, 0)  # as a producer does when it parks the earliest delayed message
    add.apply_async((1000, 1), countdown=0.01)
    good += 1
    expected_dead = len(bad) + 5 + len(garbage_delayed)

    def settled(outcomes: list[Any]) -> bool:
        return sum(o.kind == "dead" for o in outcomes) >= expected_dead and len(done) >= good

    outcomes = worker.wait_outcomes(settled, timeout_s=60)
    dead = [o for o in outcomes if o.kind == "dead"]
    assert len(dead) == expected_dead and all(o.reason for o in dead)
    assert len(done) == good
    assert sorted(done)[-1] == 1001
    letters = app.broker.dead_letters("default", expected_dead + 10)
    assert len(letters) == expected_dead
    assert all(letter.reason for letter in letters)
    reasons = " ".join(letter.reason for letter in letters)
    for expected in ("undecodable message", "unknown task", "wrong arguments", "bad option", "refused"):
        assert expected in reasons
    # nothing is stuck: no entry waits, none is owned by a worker, no retry is parked
    assert r.xlen(keys.ready) == 0
    assert r.xpending(keys.ready, GROUP)["pending"] == 0
    assert r.zcard(keys.delayed) == 0
    worker.stop()
    r.close()
    app.close()
