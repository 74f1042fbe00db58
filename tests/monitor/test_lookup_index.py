"""The lookup index (``m:ix``, 4 bytes per recorded outcome) and the record blocks: keys are the same
for an id wherever they are computed, a lookup walks the index in bounded ranges and finds every
outcome of an id (its timeline) and nothing else, and a block reads back as the records it holds."""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from typing import Any

import msgpack
import pytest
import redis

from celeriac.broker.base import Delivery
from celeriac.execution import Outcome
from celeriac.message import Message
from celeriac.monitor import MonitorReader
from celeriac.monitor import reader as reader_module
from celeriac.monitor import recorder as recorder_module
from celeriac.monitor.keys import id_keys, monitor_keys
from celeriac.monitor.record import block, entry_rows, pack
from celeriac.monitor.recorder import MonitorSettings, Recorder
from celeriac.monitor.script import RECORD
from celeriac.states import TaskState


def test_a_uuid_key_is_its_first_four_bytes_xor_its_last_four() -> None:
    u = uuid.uuid4()
    assert id_keys([str(u)]) == bytes(a ^ b for a, b in zip(u.bytes[:4], u.bytes[12:]))
    # version 7 (a timestamp first) and version 1 (a constant node last) still spread out
    assert len({id_keys([f"0190a1b2-c3d4-7{i:03x}-8abc-{i:012x}"]) for i in range(1000)}) == 1000


@pytest.mark.parametrize(
    "ids",
    [
        [str(uuid.uuid4()) for _ in range(700)],
        [str(uuid.uuid4()).upper() for _ in range(5)],
        ["order-1", str(uuid.uuid4()), "é" * 36, "x" * 36, "a" * 8 + "-" + "b" * 27],
        ["0" * 8 + "-0000-0000-0000-00000000 00z"],  # the shape of a UUID, not its digits
        [str(uuid.uuid4())[:-1] + " ", str(uuid.uuid4())],
    ],
    ids=["uuids", "upper-case", "mixed", "not-hex", "whitespace"],
)
def test_a_batch_gives_each_id_the_key_it_has_alone(ids: list[str]) -> None:
    assert id_keys(ids) == b"".join(id_keys([i]) for i in ids)
    assert len(id_keys(ids)) == 4 * len(ids)


def test_any_other_id_is_keyed_by_its_digest() -> None:
    assert id_keys(["order-1"]) == hashlib.blake2b(b"order-1", digest_size=4).digest()


def _block(rows: list[tuple[Any, ...]], started_column: bool = True) -> bytes:
    ids, names, states, ready, started, finished, runtimes, retries = zip(*rows)
    if started_column:
        times = struct.pack(f"<{3 * len(rows)}d", *started, *finished, *runtimes)
    else:  # as the worker packs runs that started their runtime before their finish
        assert all(s == f - r for s, f, r in zip(started, finished, runtimes))
        times = struct.pack(f"<{2 * len(rows)}d", *finished, *runtimes)
    counts = struct.pack(f"<{len(rows)}I", *retries) if any(retries) else b""
    return block(len(rows), names[0], states[0], "\x00".join(ids), "\x00".join(ready), times, counts)


def _rows(n: int, retries: int = 0) -> list[tuple[Any, ...]]:
    return [
        (str(uuid.uuid4()), "tasks.a", "SUCCESS", f"1700000000000-{i}", 1.5 + i, 2.25 + i, 0.75, retries * i)
        for i in range(n)
    ]


@pytest.mark.parametrize("started_column", [True, False], ids=["started-column", "started-computed"])
@pytest.mark.parametrize("retries", [0, 1])
def test_a_block_reads_back_as_its_records(retries: int, started_column: bool) -> None:
    """Both forms of a block's times: with the started column, and without it (each started time is
    its finished time less its runtime, as readers compute it)."""
    rows = _rows(300, retries)
    packed = _block(rows, started_column)
    assert packed is not None and len(packed) < len(pack(rows))
    items = [list(_rows(1)[0]), msgpack.unpackb(packed, raw=False), list(_rows(1)[0])]
    got = entry_rows(items)
    assert got[1:301] == [list(r) for r in rows] and len(got) == 302


def test_ids_a_block_cannot_hold_are_packed_as_records() -> None:
    """A task id holding a NUL (the block's separator): that batch is written as records."""
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    now = time.time()
    for tid in ("a", "b\x00c", "d"):
        o = Outcome("ack", tid, "tasks.a", TaskState.SUCCESS, runtime_s=0.001)
        rec.note(Delivery("default", f"{int(now * 1000)}-0", b"m"), o, Message(tid, "tasks.a"))
    rec._seal()
    (seg,) = rec._sealed
    assert seg.items == 3 and seg.n == 3  # three records, no block
    assert seg.ids == id_keys(["a", "b\x00c", "d"])


@pytest.mark.parametrize(
    "ids",
    [[str(uuid.uuid4()) for _ in range(300)], [str(uuid.uuid4()), "x" * 36, str(uuid.uuid4()).upper(), "y"]],
    ids=["uuids", "mixed"],
)
def test_keys_from_the_joined_ids_are_the_keys_of_each(ids: list[str]) -> None:
    assert id_keys(ids, "\x00".join(ids)) == b"".join(id_keys([i]) for i in ids)


def test_a_block_that_does_not_decode_is_skipped() -> None:
    rows = _rows(2)
    good = msgpack.unpackb(_block(rows), raw=False)
    assert entry_rows([{**good, "n": 3}, list(rows[0])]) == [list(rows[0])]
    assert entry_rows([{"n": "x"}]) == []
    short = msgpack.unpackb(_block(rows, started_column=False), raw=False)
    assert entry_rows([{**short, "t": short["t"][:-8]}]) == []  # neither 2 nor 3 times per record


@pytest.mark.redis
def test_a_lookup_walks_the_index_in_ranges_and_finds_every_outcome(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200,000 outcomes in 4 queues, read 10,000 at a time: an id retried across writes and queues
    is found in each (oldest first), an unknown id in none."""
    monkeypatch.setattr(reader_module, "_FIND_RANGE", 10_000)
    client = redis.Redis.from_url(redis_url)
    client.script_load(RECORD.text)
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    queues = ["q0", "q1", "q2", "q3"]
    now = time.time()
    again = str(uuid.uuid4())
    for w in range(40):
        q = queues[w % 4]
        for i in range(5_000):
            tid = str(uuid.uuid4())
            retries = 0
            if (w, i) in ((3, 10), (17, 4_000), (38, 1)):
                tid, retries = again, [3, 17, 38].index(w)
            o = Outcome("ack", tid, "tasks.a", TaskState.SUCCESS, runtime_s=0.001)
            rec.note(Delivery(q, f"{int(now * 1000)}-{i}", b"m"), o, Message(tid, "tasks.a", retries=retries))
        keys, args = rec._call_of(q, rec.take_sealed())
        client.evalsha(RECORD.sha, len(keys), *keys, *args)
    reader = MonitorReader(client)
    timeline = reader.task(again, queues)
    assert [(r.queue, r.retries) for r in timeline] == [("q3", 0), ("q1", 1), ("q2", 2)]
    assert reader.task(str(uuid.uuid4()), queues) == []
    assert reader.sizes(queues) == {q: (50_000, 0) for q in queues}
    k = monitor_keys("celeriac", "q0")
    assert client.strlen(k.ix) == 4 * 50_000


@pytest.mark.redis
def test_records_whose_keys_collide_are_told_apart(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.script_load(RECORD.text)
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    ids = ["order-1", "order-2"]
    now = time.time()
    for tid in ids:
        o = Outcome("ack", tid, "tasks.a", TaskState.SUCCESS, runtime_s=0.001)
        rec.note(Delivery("default", f"{int(now * 1000)}-0", b"m"), o, Message(tid, "tasks.a"))
    keys, args = rec._call_of("default", rec.take_sealed())
    client.evalsha(RECORD.sha, len(keys), *keys, *args)
    # every record gets one key, in order: overwrite the second's with the first's
    k = monitor_keys("celeriac", "default")
    client.setrange(k.ix, 4, id_keys(["order-1"]))
    reader = MonitorReader(client)
    assert [r.task_id for r in reader.task("order-1", ["default"])] == ["order-1"]
    assert reader.task("order-2", ["default"]) == []  # its key no longer points at it


@pytest.mark.redis
def test_a_mixed_batch_is_a_block_per_task_then_the_other_records(redis_url: str) -> None:
    """Successes of three tasks interleaved with failures, retries and a few successes of a rare
    task: each frequent task's successes become one block, the rest records; every record reads back
    as it was noted, is found by id, and the rollups count each once."""
    client = redis.Redis.from_url(redis_url)
    client.script_load(RECORD.text)
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    now = time.time()
    noted: dict[str, tuple[str, str, int]] = {}
    for i in range(600):
        tid = str(uuid.uuid4())
        name = "tasks.rare" if i % 150 == 0 else f"tasks.t{i % 3}"
        state, exc = (TaskState.FAILURE, ValueError("no")) if i % 50 == 7 else (TaskState.SUCCESS, None)
        o = Outcome("ack", tid, name, state, exc=exc, runtime_s=0.002 * (i % 4))
        rec.note(Delivery("default", f"{int(now * 1000)}-{i}", b"m"), o, Message(tid, name, retries=i % 2))
        noted[tid] = (name, "FAILURE" if exc else "SUCCESS", i % 2)
    sealed = rec.take_sealed()
    # 3 blocks, then 4 rare successes and 12 failures as records
    assert [(seg.n, seg.items) for seg in sealed] == [(196, 1), (196, 1), (192, 1), (16, 16)]
    for _part, keys, args in rec._calls_of(sealed):
        client.evalsha(RECORD.sha, len(keys), *keys, *args)
    reader = MonitorReader(client)
    records = reader.page(["default"], limit=1000).records
    assert {r.task_id: (r.name, r.state, r.retries) for r in records} == noted
    for tid in list(noted)[::37]:
        assert [r.task_id for r in reader.task(tid, ["default"])] == [tid]
    totals = reader.totals(["default"])["default"]
    assert totals["*|SUCCESS"] == 588 and totals["*|FAILURE"] == 12
    assert totals["tasks.rare|SUCCESS"] == 4


@pytest.mark.redis
def test_a_batch_of_only_blocks_reads_back(redis_url: str) -> None:
    """Successes of two tasks and nothing else: two blocks, no records (the entry's element count
    is the blocks alone)."""
    client = redis.Redis.from_url(redis_url)
    client.script_load(RECORD.text)
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    now = time.time()
    for i in range(40):
        tid, name = str(uuid.uuid4()), f"tasks.t{i % 2}"
        o = Outcome("ack", tid, name, TaskState.SUCCESS, runtime_s=0.001)
        rec.add(Delivery("default", f"{int(now * 1000)}-{i}", b"m"), o, Message(tid, name), now)
    sealed = rec.take_sealed()
    assert [(seg.n, seg.items) for seg in sealed] == [(20, 1), (20, 1)]
    for _part, keys, args in rec._calls_of(sealed):
        client.evalsha(RECORD.sha, len(keys), *keys, *args)
    records = MonitorReader(client).page(["default"], limit=100).records
    assert sorted(r.name for r in records) == ["tasks.t0"] * 20 + ["tasks.t1"] * 20


@pytest.mark.redis
def test_every_column_of_a_run_reads_back_as_noted(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain successes go into their task's columns (``_Run``) and come back as noted: times,
    retries, a start given to ``add`` (alone: a record; a run of them: a block with its started
    column), one task from two queues (a block each), a run holding an id with a NUL (records: a
    block cannot hold it), a run too short for a block."""
    client = redis.Redis.from_url(redis_url)
    client.script_load(RECORD.text)
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    base_s = 1_700_000_000.0
    finish_s = 0.0
    monkeypatch.setattr(recorder_module, "_clock", lambda: finish_s)  # one read per outcome
    want: dict[str, tuple[Any, ...]] = {}

    def success(i: int, tid: str, name: str, queue: str, retries: int = 0, start_s: float = 0.0) -> None:
        nonlocal finish_s
        finish_s = base_s + i
        o = Outcome("ack", tid, name, TaskState.SUCCESS, runtime_s=0.25 * (i % 3))
        d = Delivery(queue, f"{int(base_s * 1000)}-{i}", b"m")
        m = Message(tid, name, retries=retries)
        if start_s:
            rec.add(d, o, m, start_s)
        else:
            rec.note(d, o, m)
        started_s = start_s or finish_s - o.runtime_s
        want[tid] = (
            queue,
            name,
            "SUCCESS",
            retries,
            int(started_s * 1000),
            int(finish_s * 1000),
            o.runtime_s,
        )

    for i in range(30):
        success(i, str(uuid.uuid4()), "tasks.a", "default", retries=2 if i % 10 == 3 else 0)
    success(30, "given-start", "tasks.a", "default", start_s=base_s - 60)
    for i in range(31, 41):
        success(i, str(uuid.uuid4()), "tasks.a", "other")
    for i in range(41, 51):
        success(i, f"nul\x00{i}" if i == 45 else f"plain-{i}", "tasks.n", "default")
    for i in range(51, 54):
        success(i, str(uuid.uuid4()), "tasks.short", "default")
    for i in range(54, 64):
        success(i, str(uuid.uuid4()), "tasks.g", "default", start_s=base_s - 60 + i)
    sealed = rec.take_sealed()
    assert sorted((seg.queue, seg.n, seg.items) for seg in sealed) == [
        ("default", 10, 1),  # tasks.g: one block, with its started column
        ("default", 14, 14),  # given-start (1), tasks.n (10, one id with a NUL), tasks.short (3): records
        ("default", 30, 1),  # tasks.a: one block, started computed by readers
        ("other", 10, 1),
    ]
    blocks = [msgpack.unpackb(seg.rows) for seg in sealed if seg.items == 1]
    assert sorted(len(b["t"]) // 8 // b["n"] for b in blocks) == [2, 2, 3]
    for _part, keys, args in rec._calls_of(sealed):
        client.evalsha(RECORD.sha, len(keys), *keys, *args)
    reader = MonitorReader(client)
    records = reader.page(["default", "other"], limit=100).records
    got = {
        r.task_id: (r.queue, r.name, r.state, r.retries, r.started_ms, r.finished_ms, r.runtime_s)
        for r in records
    }
    assert got == want
    assert [r.task_id for r in reader.task("nul\x0045", ["default"])] == ["nul\x0045"]
    assert [r.started_ms for r in reader.task("given-start", ["default"])] == [int((base_s - 60) * 1000)]
