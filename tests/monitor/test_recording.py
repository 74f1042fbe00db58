"""Workers record every outcome: what each record holds, redaction, bounds, and the switches."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from celeriac import Celeriac, Reject
from celeriac.monitor import MonitorReader
from celeriac.monitor.keys import monitor_keys
from celeriac.monitor.recorder import MonitorSettings, Recorder

pytestmark = pytest.mark.redis


def _wait_recorded(reader: MonitorReader, queues: list[str], n: int, timeout_s: float = 10) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        page = reader.page(queues, limit=1000)
        if len(page.records) >= n or time.monotonic() > deadline:
            return page.records
        time.sleep(0.02)


def test_every_kind_of_outcome_is_recorded(app: Celeriac, client: redis.Redis, thread_worker: Any) -> None:
    @app.task
    def ok(x: int) -> int:
        return x

    @app.task(max_retries=1, default_retry_delay=0, autoretry_for=(KeyError,))
    def flaky(token: str = "", note: str = "") -> None:
        raise KeyError("missing")

    @app.task
    def boom(*args: Any) -> None:
        raise ValueError("x" * 2500)

    @app.task
    def refuse() -> None:
        raise Reject("no thanks")

    w = thread_worker(app)
    ok.delay(1)
    flaky.delay(token="s3cret", note="<b>hi</b>")
    boom.delay("a" * 5000)
    refuse.delay()
    app.send_task("not.registered")
    expired = ok.apply_async((2,), expires=datetime.now(timezone.utc) - timedelta(seconds=5))
    w.wait_outcomes(lambda o: len(o) >= 7)
    reader = MonitorReader(client)
    records = _wait_recorded(reader, ["default"], 7)
    by_state: dict[str, list[Any]] = {}
    for r in records:
        by_state.setdefault(r.state, []).append(r)
    assert sorted(by_state) == ["DEAD", "EXPIRED", "FAILURE", "RETRY", "SUCCESS"]
    success = by_state["SUCCESS"][0]
    assert success.name.endswith(".ok") and success.queue == "default"
    assert success.worker == w.worker.worker_id
    assert success.queued_ms <= success.started_ms <= success.finished_ms
    # a run started its runtime before it finished (no clock is read for the start); what never ran
    # (expired, unknown task) has no start
    assert abs(success.finished_ms - success.runtime_s * 1000 - success.started_ms) <= 1
    assert by_state["EXPIRED"][0].started_ms == 0
    assert success.runtime_s >= 0 and success.details == {}  # nothing else kept for a success
    retry = by_state["RETRY"][0]
    assert retry.details["exc"] == "builtins.KeyError" and retry.retries == 0
    assert retry.details["kwargs"] == "{'token': '***', 'note': '<b>hi</b>'}"  # redacted, kept as text
    dead = {r.name.rsplit(".", 1)[-1]: r for r in by_state["DEAD"]}
    assert set(dead) == {"flaky", "refuse", "registered"}
    assert dead["flaky"].retries == 1 and "max retries" in dead["flaky"].details["reason"]
    assert "no thanks" in dead["refuse"].details["reason"]
    assert "unknown task" in dead["registered"].details["reason"] and dead["registered"].started_ms == 0
    failure = by_state["FAILURE"][0]
    assert failure.details["exc"] == "builtins.ValueError"
    assert len(failure.details["msg"]) <= 2000 and "Traceback" in failure.details["tb"]
    assert len(failure.details["args"]) <= 1000  # monitor_max_arg_chars
    assert by_state["EXPIRED"][0].task_id == expired.id
    # the timeline of the retried task links its two outcomes
    timeline = reader.task(retry.task_id, ["default"])
    assert [r.state for r in timeline] == ["RETRY", "DEAD"]
    # failures index and groups
    groups = {(g.name.rsplit(".", 1)[-1], g.exception_type): g for g in reader.failure_groups(["default"])}
    assert groups[("boom", "builtins.ValueError")].count == 1
    assert groups[("boom", "builtins.ValueError")].latest is not None
    # rollups and lifetime totals
    series = reader.series(["default"], "hour")
    assert sum(series.total) == 7 and sum(series.failures) == 4
    totals = reader.totals(["default"])["default"]
    assert totals["*|SUCCESS"] == 1 and totals["*|DEAD"] == 3 and totals["*|RETRY"] == 1


def test_heartbeat_reports_rss_and_running_tasks(app: Celeriac, thread_worker: Any) -> None:
    import asyncio

    release = asyncio.Event()

    @app.task
    async def wait() -> None:
        await asyncio.wait_for(release.wait(), 10)

    w = thread_worker(app)
    r = wait.delay()
    deadline = time.monotonic() + 10
    fields: dict[str, str] = {}
    while time.monotonic() < deadline:
        infos = app.broker.workers()
        fields = infos[0].fields if infos else {}
        if r.id in fields.get("tasks", ""):
            break
        time.sleep(0.05)
    assert r.id in fields["tasks"] and int(fields["rss_kb"]) > 1000 and fields["events"] == "on"
    w.worker.run_state.loop.call_soon_threadsafe(release.set)


def test_events_off_records_nothing(app: Celeriac, client: redis.Redis, thread_worker: Any) -> None:
    @app.task
    def ok() -> None:
        pass

    w = thread_worker(app, events=False)
    ok.delay()
    w.wait_outcomes(lambda o: len(o) >= 1)
    w.stop()
    app.conf.monitor_events = False
    w2 = thread_worker(app)
    assert w2.worker.recorder is None
    ok.delay()
    w2.wait_outcomes(lambda o: len(o) >= 1)
    time.sleep(0.2)
    assert client.keys("*:m:*") == []


def test_bounds_cap_and_retention(client: redis.Redis) -> None:
    from celeriac.testing.outcomes import fill_outcomes

    settings = MonitorSettings(max_entries=1000, max_failures=20, retention_s=3600)
    ids = fill_outcomes(client, 5000, settings=settings, batch=100, failed_every=10)
    k = monitor_keys("celeriac", "default")
    reader = MonitorReader(client)
    # whole entries go, oldest first: the log keeps at most the cap (batches of 100: exactly it)
    assert reader.sizes(["default"])["default"][0] == 1000
    assert _log_records(client, k.log) == 1000
    assert client.zcard(k.ents) == 10
    kept = len(reader.page(["default"], limit=500, cursor=None).records)
    assert kept == 500
    # the lookup index is cut from the front with the log (at most twice what the log holds)
    n, base = (int(v) for v in client.hmget(k.ixh, "n", "base"))
    assert n == 5000 and client.strlen(k.ix) == (n - base) * 4 <= 2 * 1000 * 4
    assert reader.task(ids[-1], ["default"])[0].task_id == ids[-1]  # kept: found
    assert not [r for r in reader.task(ids[0], ["default"]) if not r.failed]  # trimmed: gone
    assert 20 <= client.xlen(k.fail) <= 120  # approximate MAXLEN trims in whole nodes
    assert client.zcard(k.fids) == 20
    for key in (k.log, k.ix, k.ixh, k.ents, k.fail, k.fids, k.fgroups, k.total):
        assert 0 < client.ttl(key) <= 3600 + 86_400
    for key in client.keys("*:m:roll:*"):
        assert client.ttl(key) > 0
    # retention: everything recorded before the cut-off goes at the next write
    settings = MonitorSettings(max_entries=1000, retention_s=0.001)
    time.sleep(0.01)
    fill_outcomes(client, 10, settings=settings, batch=10, failed_every=0)
    assert reader.sizes(["default"])["default"][0] == 10
    assert _log_records(client, k.log) == 10
    assert client.zcard(k.ents) == 1 and client.strlen(k.ix) == 40


def _log_records(client: redis.Redis, key: str) -> int:
    import msgpack

    from celeriac.monitor.record import entry_rows

    return sum(len(entry_rows(msgpack.unpackb(f[b"r"], raw=False))) for _, f in client.xrange(key))


def test_a_failed_write_keeps_records_and_never_raises(client: redis.Redis) -> None:
    import asyncio

    from celeriac.broker.base import Delivery
    from celeriac.execution import Outcome
    from celeriac.states import TaskState

    class Down:
        def pipeline(self, transaction: bool = False) -> Any:
            raise redis.ConnectionError("down")

    rec = Recorder(Down(), "celeriac", "w", MonitorSettings())  # type: ignore[arg-type]
    rec.add(Delivery("default", "1-0", b""), Outcome("ack", "t1", "n", TaskState.SUCCESS), None, time.time())
    asyncio.run(rec.flush())
    assert rec.pending and rec.recorded == 0


def test_timeline_links_outcomes_in_one_batch_and_across_batches(client: redis.Redis) -> None:
    """A task's outcomes link whether they were written in one batch or in several."""
    from celeriac.broker.base import Delivery
    from celeriac.execution import Outcome
    from celeriac.message import Message
    from celeriac.monitor.script import RECORD
    from celeriac.states import TaskState

    rec = Recorder(client, "celeriac", "w", MonitorSettings())  # type: ignore[arg-type]
    client.script_load(RECORD.text)
    now = time.time()

    def item(retries: int, kind: str) -> None:
        state = None if kind == "retry" else TaskState.SUCCESS
        o = Outcome(kind, "t1", "n", state, exc=KeyError("k") if kind == "retry" else None)  # type: ignore[arg-type]
        rec.add(
            Delivery("default", f"{int(now * 1000)}-{retries}", b""),
            o,
            Message("t1", "n", retries=retries),
            now,
        )

    def write() -> None:
        keys, args = rec._call_of("default", rec.take_sealed())
        client.evalsha(RECORD.sha, len(keys), *keys, *args)

    item(0, "retry")
    item(1, "retry")
    write()  # one batch
    item(2, "ack")
    write()  # a later batch
    timeline = MonitorReader(client).task("t1", ["default"])
    assert [(r.state, r.retries) for r in timeline] == [("RETRY", 0), ("RETRY", 1), ("SUCCESS", 2)]


def test_follow_from_now_misses_nothing_another_queue_records_during_the_read(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first ``follow`` (from now) over two queues returns when one of them records; the other
    queue's outcomes of that moment (the same write, one script call per queue) come with the next
    call. Regression: "from now" was pinned after the read, past what the second queue had recorded."""
    from celeriac.testing.outcomes import fill_outcomes

    reader = MonitorReader(client)
    fill_outcomes(client, 5, queues=["default"], batch=5, failed_every=0)
    real_xread = client.xread

    def xread(*args: Any, **kwargs: Any) -> Any:
        fill_outcomes(client, 5, queues=["default"], batch=5, failed_every=0)
        reply = real_xread(*args, **kwargs)  # the read sees default's new entry and returns
        fill_outcomes(client, 5, queues=["emails"], batch=5, failed_every=0)  # the write's other call
        return reply

    monkeypatch.setattr(client, "xread", xread)
    got, pos = reader.follow(["default", "emails"], block_ms=10)
    assert {r.queue for r in got} == {"default"} and len(got) == 5
    monkeypatch.setattr(client, "xread", real_xread)
    got, pos = reader.follow(["default", "emails"], pos, block_ms=10)
    assert {r.queue for r in got} == {"emails"} and len(got) == 5


def test_follow_tails_new_outcomes(client: redis.Redis) -> None:
    """``MonitorReader.follow``: what ``celeriac events`` builds on; nothing is lost between calls."""
    from celeriac.testing.outcomes import fill_outcomes

    reader = MonitorReader(client)
    fill_outcomes(client, 10, queues=["default", "emails"], batch=5, failed_every=0)
    got, pos = reader.follow(["default", "emails"], block_ms=10)
    assert got == []  # starts from now
    fill_outcomes(client, 30, queues=["default", "emails"], batch=5, failed_every=0)
    got, pos = reader.follow(["default", "emails"], pos, block_ms=10)
    assert len(got) == 30 and {r.queue for r in got} == {"default", "emails"}
    got, pos = reader.follow(["default", "emails"], pos, block_ms=10)
    assert got == []
