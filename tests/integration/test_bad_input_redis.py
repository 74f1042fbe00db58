"""Garbage in a real queue: every bad entry is dead-lettered with a reason, good tasks keep running,
and nothing stays stuck (no ready entry left, no delivery left pending). Forged dead letters can be
listed and replayed, and what they hold is refused again without stopping the queue."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import redis
from click.testing import CliRunner

from celeriac import Celeriac, MessageTooLarge
from celeriac._redis.keys import GROUP
from celeriac.cli import main as cli_main
from celeriac.message import SIGNED_MESSAGE, Message, new_task_id
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


def _adding_app(redis_url: str) -> tuple[Celeriac, list[int]]:
    """An app with one task, ``bad.add``, that appends ``x + y`` to the returned list."""
    app = Celeriac("bad", broker=redis_url, task_ignore_result=True)
    done: list[int] = []

    @app.task(name="bad.add")
    def add(x: int, y: int) -> None:
        done.append(x + y)

    return app, done


def test_random_bytes_in_a_queue_are_dead_lettered_and_good_tasks_run(
    redis_url: str, thread_worker: Callable[..., ThreadWorker], reliability: Any
) -> None:
    app, done = _adding_app(redis_url)
    add = app.tasks["bad.add"]

    rng = random.Random(SEED)
    bad = garbage(rng)
    keys = app.broker.keys.queue("default")  # type: ignore[attr-defined]
    r = redis.Redis.from_url(redis_url)
    worker = thread_worker(app, concurrency=20)
    started = time.monotonic()

    good = 0
    for i, data in enumerate(bad):
        r.xadd(keys.ready, {"m": data})
        if i % 7 == 0:
            add.delay(i, 1)
            good += 1
    for _ in range(5):  # entries without a message field
        r.xadd(keys.ready, {"x": b"no m field"})
    valid = app.codec.encode(Message(new_task_id(), "bad.add", (2000, 1)))
    wrong_fields = [{"M": valid}, {"message": valid}, {"": valid}]  # a valid message, misnamed
    for fields in wrong_fields:
        r.xadd(keys.ready, fields)
    r.xadd(keys.ready, {"id": b"x", "m": valid, "extra": b"y"})  # extra fields: the message runs
    good += 1
    garbage_delayed = [b"delayed-garbage-%d" % i + rng.randbytes(10) for i in range(10)]
    r.zadd(keys.delayed, {m: 0 for m in garbage_delayed})  # due at once: promoted, then refused
    r.zadd(keys.delayed, {b"delayed-garbage-at-minus-infinity": float("-inf")})
    r.publish(keys.wake, 0)  # as a producer does when it parks the earliest delayed message
    add.apply_async((1000, 1), countdown=0.01)
    good += 1
    expected_dead = len(bad) + 5 + len(wrong_fields) + len(garbage_delayed) + 1

    def settled(outcomes: list[Any]) -> bool:
        # outcomes, not `done`: a task appends to `done` while it runs, before its ack is written,
        # and the stream checks below need every delivery settled
        return (
            sum(o.kind == "dead" for o in outcomes) >= expected_dead
            and sum(o.kind == "ack" for o in outcomes) >= good
        )

    outcomes = worker.wait_outcomes(settled, timeout_s=60)
    dead = [o for o in outcomes if o.kind == "dead"]
    elapsed = time.monotonic() - started
    assert len(dead) == expected_dead and all(o.reason for o in dead)
    assert len(done) == good
    assert sorted(done)[-2:] == [1001, 2001]
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
    kinds = {k: sum(k in letter.reason for letter in letters) for k in ("undecodable", "unknown task")}
    reliability.record(
        "Bad input in a real queue: random bytes, near-miss envelopes, a 1.1 MB entry, entries without "
        "or with misnamed message fields, garbage in the delayed set",
        "each bad entry dead-lettered with a reason; good tasks sent among them run; no entry left "
        "ready, pending or delayed",
        f"{expected_dead} bad entries ({len(bad)} in the stream, {5 + len(wrong_fields)} without an "
        f"'m' field, {len(garbage_delayed) + 1} delayed) -> {len(letters)} dead letters "
        f"({kinds['undecodable']} undecodable, {kinds['unknown task']} unknown task, the rest wrong "
        f"arguments, bad options, refused content); {len(done)} of {good} good tasks ran; "
        f"all sent and settled in {elapsed:.2f} s",
    )


def test_forged_dead_letters_are_listed_and_replayed_without_sticking(
    redis_url: str, thread_worker: Callable[..., ThreadWorker], reliability: Any
) -> None:
    app, done = _adding_app(redis_url)
    add = app.tasks["bad.add"]

    keys = app.broker.keys.queue("default")  # type: ignore[attr-defined]
    r = redis.Redis.from_url(redis_url)
    rng = random.Random(SEED)

    def valid(x: int) -> bytes:
        return app.codec.encode(Message(new_task_id(), "bad.add", (x, 0)))

    forged: list[dict[str, Any]] = [  # what anyone with write access to Redis can put there
        {"m": rng.randbytes(40), "reason": "garbage", "time": "1"},
        {"m": valid(1), "reason": b"\xff\xfe not UTF-8", "time": "not a number"},
        {"m": valid(2), "time": str(10**18)},  # no reason; a time past any clock
        {"m": b"", "reason": "", "time": ""},
        {"m": b"\x94" * 1000, "reason": "x" * 10_000, "time": "-5"},
        {"reason": "no message field"},  # nothing to replay
        {"M": valid(3)},  # misnamed: not a message either
    ]
    for fields in forged:
        r.xadd(keys.dead, fields)
    letters = app.broker.dead_letters("default", 100)
    assert len(letters) == len(forged)
    runner = CliRunner(env={"COLUMNS": "200"})
    listing = runner.invoke(
        cli_main, ["--broker", redis_url, "dlq", "list", "default"], catch_exceptions=False
    )
    assert listing.exit_code == 0, listing.output
    worker = thread_worker(app)
    replay = runner.invoke(
        cli_main, ["--broker", redis_url, "dlq", "replay", "default", "--all"], catch_exceptions=False
    )
    with_message = sum("m" in fields for fields in forged)
    assert replay.exit_code == 0 and f"replayed {with_message}" in replay.output, replay.output
    add.delay(3, 3)  # a good task sent after them
    outcomes = worker.wait_outcomes(lambda outs: len(outs) == with_message + 1)
    dead = [o for o in outcomes if o.kind == "dead"]
    assert len(dead) == 3 and all("undecodable" in o.reason for o in dead)  # refused again
    assert sorted(done) == [1, 2, 6]
    assert r.xlen(keys.ready) == 0 and r.xpending(keys.ready, GROUP)["pending"] == 0
    again = app.broker.dead_letters("default", 100)
    assert len(again) == 3 and all(letter.reason for letter in again)
    worker.stop()
    r.close()
    app.close()
    reliability.record(
        "Forged dead letters: garbage, non-UTF-8 reason, bad or absurd times, empty and huge messages, "
        "no or misnamed message field",
        "`celeriac dlq list` and `dlq replay --all` work; replayed garbage is dead-lettered again with "
        "its reason; valid ones and a task sent after them run; nothing stuck",
        f"{len(forged)} forged entries listed, {with_message} replayed, {len(dead)} dead-lettered again "
        f"(undecodable), {len(done)} tasks ran; 0 ready, 0 pending",
    )


def test_oversized_messages_are_refused_at_send_and_nothing_is_queued(
    redis_url: str, thread_worker: Callable[..., ThreadWorker], reliability: Any
) -> None:
    app = Celeriac("big", broker=redis_url, max_message_bytes=64 * 1024, task_ignore_result=False)

    @app.task(name="bad.size")
    def size(blob: bytes) -> int:
        return len(blob)

    refused = []
    for send in (
        lambda: size.delay(b"x" * (64 * 1024)),
        lambda: size.apply_async((b"x" * (1 << 20),), countdown=1),
        lambda: app.send_many([size.s(b"ok"), size.s(b"x" * (100 * 1024)), size.s(b"ok")]),
    ):
        with pytest.raises(MessageTooLarge, match="max_message_bytes=65536") as info:
            send()
        refused.append(info.value.size)
    stats = app.broker.stats("default")
    assert (stats.ready, stats.delayed) == (0, 0)  # a bulk send with one oversized message sends none
    thread_worker(app)
    assert size.delay(b"x" * 60_000).get(timeout=10) == 60_000  # just under the limit: runs
    app.close()
    reliability.record(
        "Oversized message (max_message_bytes=64 KiB)",
        "MessageTooLarge at send (one, delayed, and a bulk send holding one): nothing queued; a "
        "message under the limit runs",
        f"{len(refused)} sends refused (encoded sizes {', '.join(f'{n:,}' for n in refused)} bytes), "
        "0 queued; a 60,000-byte argument ran",
    )
