"""One recorded batch (one ``record.lua`` call per queue): every outcome in it is recorded, and its rollups are
those of the per-record rule, whatever mix of tasks, states and never-run outcomes it holds.

The recorder computes a batch's rollups with C-level passes when every record ran (the usual batch) and
passes only the task ids to the script (it does not decode the records): these tests pin both to the
plain rule.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from typing import Any
from unittest import mock

import msgpack
import pytest
import redis
import redis.asyncio

from celeriac.broker.base import Delivery
from celeriac.execution import Outcome
from celeriac.message import Message
from celeriac.monitor import MonitorReader
from celeriac.monitor import recorder as recorder_module
from celeriac.monitor.record import entry_rows
from celeriac.monitor.recorder import MonitorSettings, Recorder, _rollup_counts
from celeriac.monitor.rollup import RUNTIME_BUCKETS_S
from celeriac.monitor.script import RECORD
from celeriac.states import TaskState


def _reference(rows: list[tuple[Any, ...]]) -> tuple[dict[tuple[str, str, int], int], dict[str, float]]:
    """The per-record rule, one record at a time."""
    counts: dict[tuple[str, str, int], int] = {}
    sums: dict[str, float] = {}
    for row in rows:
        name, state, started_s, runtime_s = row[1], row[2], row[4], row[6]
        if started_s:
            key = (name, state, bisect_left(RUNTIME_BUCKETS_S, runtime_s))
            sums[name] = sums.get(name, 0.0) + runtime_s
        else:
            key = (name, state, -1)
        counts[key] = counts.get(key, 0) + 1
    return counts, sums


def _row(i: int, name: str, state: str, started_s: float, runtime_s: float) -> tuple[Any, ...]:
    return (f"t{i}", name, state, f"1-{i}", started_s, started_s + runtime_s, runtime_s, 0)


@pytest.mark.parametrize(
    "rows",
    [
        [_row(i, "a", "SUCCESS", 100.0, 0.0004 * i) for i in range(50)],  # one task, every one ran
        [_row(i, "ab"[i % 2], ["SUCCESS", "FAILURE"][i % 3 == 0], 100.0, 0.3 * i) for i in range(50)],
        [
            _row(i, "abc"[i % 3], "SUCCESS" if i % 4 else "DEAD", 0.0 if i % 4 == 0 else 1.0, 0.01)
            for i in range(40)
        ],
        [_row(0, "a", "EXPIRED", 0.0, 0.0)],  # nothing ran
    ],
    ids=["one-name", "mixed-names-and-states", "some-never-ran", "none-ran"],
)
def test_batch_rollups_follow_the_per_record_rule(rows: list[tuple[Any, ...]]) -> None:
    counts, sums = _rollup_counts(rows)
    want_counts, want_sums = _reference(rows)
    assert dict(counts) == want_counts
    assert sums == want_sums  # the same sums, added in the same order


@pytest.mark.redis
def test_every_outcome_of_one_batch_is_recorded(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.script_load(RECORD.text)
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    now = time.time()
    n = 300
    states = {}
    for i in range(n):
        tid = f"batch-{i}"
        d = Delivery("default", f"{int(now * 1000)}-{i}", b"msg")
        if i % 10 == 0:  # a failure (kept in full, with its message)
            o = Outcome("ack", tid, "tasks.b", TaskState.FAILURE, exc=ValueError("no"), runtime_s=0.002)
            rec.add(d, o, Message(tid, "tasks.b"), now)
            states[tid] = "FAILURE"
        elif i % 7 == 0:  # never ran (expired)
            rec.add(d, Outcome("ack", tid, "tasks.a", TaskState.EXPIRED), None, 0.0)
            states[tid] = "EXPIRED"
        else:
            rec.add(d, Outcome("ack", tid, "tasks.a", TaskState.SUCCESS, runtime_s=0.001), None, now)
            states[tid] = "SUCCESS"
    keys, args = rec._call_of("default", rec.take_sealed())
    client.evalsha(RECORD.sha, len(keys), *keys, *args)  # the whole batch: one script call

    reader = MonitorReader(client)
    records = reader.page(["default"], limit=1000).records
    assert {r.task_id: r.state for r in records} == states
    assert reader.task("batch-3", ["default"])[0].state == "SUCCESS"  # found by id (the ids index)
    totals = reader.totals(["default"])["default"]
    assert totals["*|SUCCESS"] == sum(s == "SUCCESS" for s in states.values())
    assert totals["*|FAILURE"] == sum(s == "FAILURE" for s in states.values())
    assert totals["*|EXPIRED"] == sum(s == "EXPIRED" for s in states.values())
    assert len(reader.failure_groups(["default"])) == 1
    client.close()


def _noted(rec: Recorder, reference: Recorder, n: int, prefix: str = "big", queue: str = "default") -> None:
    """``n`` outcomes noted as the worker notes them (``Recorder.note``: a plain success appended to
    its task's run there, the rest by ``_add``), and added to ``reference`` as ``_add`` adds them."""
    now = time.time()
    for i in range(n):
        tid = f"{prefix}-{i}"
        d = Delivery(queue, f"{int(now * 1000)}-{i}", b"msg")
        if i % 100 == 0:
            o = Outcome("ack", tid, "tasks.b", TaskState.FAILURE, exc=ValueError("no"), runtime_s=0.002)
        else:
            o = Outcome("ack", tid, "tasks.a", TaskState.SUCCESS, runtime_s=0.001 * (i % 7))
        message = Message(tid, o.task_name or "", retries=i % 3)
        with mock.patch.object(recorder_module, "_clock", return_value=now + 1):
            rec.note(d, o, message)
        reference._add(d, o, message, now + 1 - o.runtime_s, now + 1)  # a run: started runtime_s before


@pytest.mark.redis
def test_a_write_of_several_entries_is_one_call_and_counts_every_record_once(redis_url: str) -> None:
    """A write of more records than one log entry holds (``_CHUNK``) is one script call that writes
    several entries (each read as before: at most ``_CHUNK`` records); the totals count each record
    once. Each record comes out as ``add`` would have made it."""
    client = redis.Redis.from_url(redis_url)
    client.script_load(RECORD.text)
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    reference = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    n = 2_500
    _noted(rec, reference, n)
    sealed = rec.take_sealed()
    assert sealed == reference.take_sealed()  # note's short way packs what _add packs
    calls = rec._calls_of(sealed)
    assert len(calls) == 1 and calls[0][0] == sealed  # those records
    _items, keys, args = calls[0]
    assert args[1] == 3  # log entries
    client.evalsha(RECORD.sha, len(keys), *keys, *args)

    reader = MonitorReader(client)
    totals = reader.totals(["default"])["default"]
    assert totals["*|SUCCESS"] == n - n // 100
    assert totals["*|FAILURE"] == n // 100
    assert len(reader.page(["default"], limit=5000).records) == n
    entries = client.xrange("celeriac:{default}:m:log")
    assert [len(entry_rows(msgpack.unpackb(f[b"r"], raw=False))) for _, f in entries] == [1000, 1000, 500]
    # the successes as blocks of up to 1,000 records, then the failures (another task) as records
    assert [len(msgpack.unpackb(f[b"r"])) for _, f in entries] == [1, 1, 1 + 25]
    assert reader.task("big-2499", ["default"])[0].state == "SUCCESS"  # the ids index: the last entry
    client.close()


@pytest.mark.redis
def test_a_write_of_several_calls_counts_every_record_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond ``_CALL_MAX`` records a queue's write is several calls; the rollups of all its records
    ride with the first, so the totals count each record once."""
    monkeypatch.setattr(recorder_module, "_CALL_MAX", 1000)
    client = redis.Redis.from_url(redis_url)
    client.script_load(RECORD.text)
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    reference = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    n = 2_500
    _noted(rec, reference, n)
    calls = rec._calls_of(rec.take_sealed())
    assert [recorder_module._records(part) for part, _keys, _args in calls] == [1000, 1000, 500]
    for _part, keys, args in calls:
        client.evalsha(RECORD.sha, len(keys), *keys, *args)
    assert [int(args[7]) for _part, _keys, args in calls] == [3, 0, 0]  # rollup keys: with the first only

    reader = MonitorReader(client)
    totals = reader.totals(["default"])["default"]
    assert totals["*|SUCCESS"] == n - n // 100
    assert totals["*|FAILURE"] == n // 100
    assert len(reader.page(["default"], limit=5000).records) == n
    client.close()


@pytest.mark.redis
@pytest.mark.parametrize("cluster_like", [False, True], ids=["pipeline", "concurrent-calls"])
def test_a_partly_failed_write_keeps_only_the_unwritten_records(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, cluster_like: bool
) -> None:
    """A write to two queues is two script calls; when one fails, the other queue's records are
    written, and only the failed call's records are kept for the next flush: none is recorded twice,
    none is lost. (``cluster_like``: the calls run concurrently, as on a Redis Cluster.)"""
    if cluster_like:
        monkeypatch.setattr(recorder_module, "is_cluster", lambda _client: True)
    sync = redis.Redis.from_url(redis_url)
    sync.script_load(RECORD.text)
    sync.set("celeriac:{emails}:m:log", "not a stream")  # the emails queue's call fails (WRONGTYPE)

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        rec = Recorder(client, "celeriac", "w1", MonitorSettings())
        reference = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
        _noted(rec, reference, 300, prefix="d", queue="default")
        _noted(rec, reference, 200, prefix="e", queue="emails")
        await rec.flush()
        assert rec._failing and rec.recorded == 300
        # the emails queue's records, kept packed for the next flush
        kept = rec._sealed
        assert {seg.queue for seg in kept} == {"emails"} and recorder_module._records(kept) == 200
        assert rec.pending
        sync.delete("celeriac:{emails}:m:log")  # the fault goes away
        await rec.flush()
        assert not rec._failing and rec.recorded == 500 and not rec.pending
        await client.aclose()
        reader = MonitorReader(sync)
        for queue, prefix, n in (("default", "d", 300), ("emails", "e", 200)):
            ids = sorted(r.task_id for r in reader.page([queue], limit=1000).records)
            assert ids == sorted(f"{prefix}-{i}" for i in range(n))  # each once

    asyncio.run(scenario())
    reader = MonitorReader(sync)
    for queue, prefix, n in [("default", "d", 300), ("emails", "e", 200)]:
        records = reader.page([queue], limit=1000).records
        assert sorted(r.task_id for r in records) == sorted(f"{prefix}-{i}" for i in range(n))  # once each
        totals = reader.totals([queue])[queue]
        assert totals["*|SUCCESS"] + totals["*|FAILURE"] == n
    sync.close()


@pytest.mark.redis
def test_a_timeline_links_outcomes_in_different_entries_of_one_call(redis_url: str) -> None:
    """One call writes several log entries; a task whose outcomes land in two of them (and one in a
    single entry) still shows its whole timeline: the later entry finds the earlier one."""
    client = redis.Redis.from_url(redis_url)
    client.script_load(RECORD.text)
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    now = time.time()

    def note(i: int, tid: str, retries: int, kind: str) -> None:
        state = None if kind == "retry" else TaskState.SUCCESS
        exc = KeyError("again") if kind == "retry" else None
        o = Outcome(kind, tid, "tasks.a", state, exc=exc, runtime_s=0.001)  # type: ignore[arg-type]
        rec.add(
            Delivery("default", f"{int(now * 1000)}-{i}", b"m"),
            o,
            Message(tid, "tasks.a", retries=retries),
            now,
        )

    for i in range(2_500):
        if i == 10:
            note(i, "spans", 0, "retry")  # entry 1
        elif i == 1_200:
            note(i, "spans", 1, "retry")  # entry 2
        elif i == 2_300:
            note(i, "spans", 2, "ack")  # entry 3
        elif i in (2_400, 2_401):
            note(i, "within", i - 2_400, "retry" if i == 2_400 else "ack")  # both in entry 3
        else:
            note(i, f"plain-{i}", 0, "ack")
    calls = rec._calls_of(rec.take_sealed())
    assert len(calls) == 1
    _items, keys, args = calls[0]
    client.evalsha(RECORD.sha, len(keys), *keys, *args)

    reader = MonitorReader(client)
    spans = reader.task("spans", ["default"])
    assert [(r.state, r.retries) for r in spans] == [("RETRY", 0), ("RETRY", 1), ("SUCCESS", 2)]
    within = reader.task("within", ["default"])
    assert [(r.state, r.retries) for r in within] == [("RETRY", 0), ("SUCCESS", 1)]
    client.close()


@pytest.mark.redis
def test_records_packed_in_small_batches_are_written_as_one_batch_would_be(redis_url: str) -> None:
    """The worker packs each batch of acks' records at once (``kick``) and writes many such batches
    in one call: the log entries, the ids index, the failures, the timelines (positions counted
    across the batches) and the rollups are those of the same records packed in one go (a log entry
    holds whole small batches, up to 1,000 records)."""
    now = time.time()
    outcomes = []
    for i in range(2_300):
        tid = f"t-{i}"
        if i in (5, 700, 2_250):  # one task's runs: in one small batch, then across entries
            tid = "again"
        retries = {5: 0, 700: 1, 2_250: 2}.get(i, i % 2)
        kind, state, exc = "ack", TaskState.SUCCESS, None
        if i in (5, 700) or i % 97 == 0:
            kind, state, exc = (
                ("retry", None, KeyError("k"))
                if i in (5, 700)
                else ("ack", TaskState.FAILURE, ValueError("no"))
            )
        o = Outcome(kind, tid, "tasks.a", state, exc=exc, runtime_s=0.001 * (i % 5))  # type: ignore[arg-type]
        outcomes.append(
            (Delivery("default", f"{int(now * 1000)}-{i}", b"m"), o, Message(tid, "tasks.a", retries=retries))
        )

    def written(batch_sizes: int) -> tuple[Any, ...]:
        client = redis.Redis.from_url(redis_url)
        client.flushall()
        client.script_load(RECORD.text)
        rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
        for start in range(0, len(outcomes), batch_sizes):
            for d, o, message in outcomes[start : start + batch_sizes]:
                with mock.patch.object(recorder_module, "_clock", return_value=now + 1):
                    rec.note(d, o, message)
            rec._seal()  # what kick does with each batch of acks
        for _part, keys, args in rec._calls_of(rec.take_sealed()):
            client.evalsha(RECORD.sha, len(keys), *keys, *args)
        reader = MonitorReader(client)
        records = [
            (r.task_id, r.state, r.retries, r.details) for r in reader.page(["default"], limit=5000).records
        ]
        entries = [
            len(entry_rows(msgpack.unpackb(f[b"r"], raw=False)))
            for _, f in client.xrange("celeriac:{default}:m:log")
        ]
        timeline = [(r.state, r.retries) for r in reader.task("again", ["default"])]
        failures = client.xlen("celeriac:{default}:m:fail")
        totals = reader.totals(["default"])["default"]
        client.close()
        return records, entries, timeline, failures, totals

    one_go = written(len(outcomes))
    small = written(90)
    # the same records (a batch groups its records by task and kind, so their order in a write
    # depends on how the batches fell), entries made of whole small batches each
    assert sorted(small[0], key=repr) == sorted(one_go[0], key=repr) and small[2:] == one_go[2:]
    records, entries, timeline, failures, totals = small
    assert entries == [990, 990, 320] and one_go[1] == [1000, 1000, 300]
    assert len(records) == 2_300 and sum(entries) == 2_300 and max(entries) <= 1000
    assert timeline == [("RETRY", 0), ("RETRY", 1), ("SUCCESS", 2)]
    assert failures == len([i for i in range(2_300) if i % 97 == 0 and i not in (5, 700)])
    assert totals["*|SUCCESS"] + totals["*|FAILURE"] + totals["*|RETRY"] == 2_300


@pytest.mark.redis
def test_a_write_loads_the_script_when_redis_lost_it(redis_url: str) -> None:
    """The usual write (one queue, one call, sent without the client's packer) loads ``record.lua``
    when Redis does not have it (first write, or a restarted Redis), and nothing is recorded twice."""

    def note(rec: Recorder, i: int) -> None:
        d = Delivery("default", f"{int(time.time() * 1000)}-{i}", b"m")
        rec.add(d, Outcome("ack", f"t{i}", "tasks.a", TaskState.SUCCESS, runtime_s=0.001), None, time.time())

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        rec = Recorder(client, "celeriac", "w1", MonitorSettings(), owns_client=False)
        await client.script_flush()
        for i in range(10):
            note(rec, i)
        await rec.flush()
        assert not rec._failing and rec.recorded == 10
        await client.script_flush()  # as after a restart
        note(rec, 10)
        await rec.flush()
        assert not rec._failing and rec.recorded == 11 and not rec.pending
        await client.aclose()

    asyncio.run(scenario())
    sync = redis.Redis.from_url(redis_url)
    records = MonitorReader(sync).page(["default"], limit=100).records
    assert sorted(r.task_id for r in records) == sorted(f"t{i}" for i in range(11))
    sync.close()


@pytest.mark.redis
def test_a_write_cut_off_mid_reply_does_not_leave_its_reply_for_the_next_command(redis_url: str) -> None:
    """The usual write sends on a pooled connection itself: cut off after sending (a cancelled flush
    at shutdown, a dropped link), its reply is still on the way, so the connection is closed rather
    than handed back to the pool, where the next command would read that stale reply."""

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, max_connections=1)
        rec = Recorder(client, "celeriac", "w1", MonitorSettings(), owns_client=False)
        await client.script_load(RECORD.text)
        conn = await client.connection_pool.get_connection()
        await client.connection_pool.release(conn)

        async def cut_off(*_a: Any, **_k: Any) -> Any:
            raise asyncio.CancelledError

        conn.read_response = cut_off  # type: ignore[method-assign]
        with pytest.raises(asyncio.CancelledError):
            await rec._run_unpacked(["celeriac:{default}:m:x"], [])  # any call: its reply is not read
        del conn.read_response  # the connection's own method again
        assert not conn.is_connected  # closed: its unread reply went with it
        assert await client.ping() is True  # the pool's next command reads its own reply
        assert await client.get("celeriac:nothing") is None
        await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("one_batch", [True, False], ids=["names-mixed-in-a-batch", "a-batch-per-name"])
def test_task_names_beyond_the_cap_are_recorded_as_other(
    monkeypatch: pytest.MonkeyPatch, one_batch: bool
) -> None:
    """Rollup fields are capped at ``MAX_NAMES`` task names: the plain successes that ``note`` keeps in
    its flat list are named when sealed, the same way ``_add`` names the rest (a batch of one name,
    cut into columns at once, and a batch of several, grouped record by record)."""
    monkeypatch.setattr(recorder_module, "MAX_NAMES", 2)
    rec = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
    now = time.time()
    for name in ("tasks.a", "tasks.b", "tasks.c"):
        for i in range(10):
            tid = f"{name}-{i}"
            o = Outcome("ack", tid, name, TaskState.SUCCESS, runtime_s=0.001)
            rec.note(Delivery("default", f"{int(now * 1000)}-{i}", b"m"), o, Message(tid, name))
        if not one_batch:
            rec._seal()
    names = sorted(msgpack.unpackb(seg.rows)["name"] for seg in rec.take_sealed())
    assert names == ["(other)", "tasks.a", "tasks.b"]
