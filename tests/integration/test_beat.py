"""Periodic scheduling on a real Redis, driven by a fake clock: exactly-once slots across instances,
catch-up policies, DST, versioned definitions, dynamic entries, bad input."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from celeriac import Celeriac, ConfigurationError
from celeriac.beat import Beat, Scheduler
from celeriac.schedules import crontab, get_timezone
from celeriac.testing import FakeClock

START_S = 1_700_000_003.0  # 3 s past a 10 s boundary
DELAYED = "celeriac:{default}:delayed"


def make_app(url: str, schedule: dict[str, Any] | None = None, **settings: Any) -> Celeriac:
    app = Celeriac("bt", broker=url, **settings)

    @app.task(name="bt.ping")
    def ping(x: int = 0) -> int:
        return x

    @app.task(name="bt.report")
    def report(kind: str, *, fmt: str = "pdf") -> str:
        return kind

    if schedule is not None:
        app.conf.beat_schedule = schedule
    return app


def runs(r: redis.Redis, key: str = DELAYED) -> list[tuple[str, int]]:
    """(task id, due s offset from START) of every run waiting in the delayed set."""
    from celeriac.codec import Codec
    from celeriac.config import Config

    codec = Codec.from_config(Config())
    out = []
    for member, score in r.zrange(key, 0, -1, withscores=True):
        msg = codec.decode(member)
        out.append((msg.id, int(score) // 1000))
    return sorted(out, key=lambda x: x[1])


def walk(
    clock: FakeClock, schedulers: list[Scheduler], seconds: float, step_s: float = 0.25, seed: int = 0
) -> None:
    """Move the fake clock in steps; at each step tick the schedulers in a random order."""
    rnd = random.Random(seed)
    for _ in range(int(seconds / step_s)):
        order = list(schedulers)
        rnd.shuffle(order)
        for s in order:
            s.tick()
        clock.advance(step_s)


@pytest.fixture
def r(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_three_schedulers_fire_each_slot_exactly_once(redis_url: str, r: redis.Redis) -> None:
    clock = FakeClock(START_S)
    app = make_app(redis_url, {"every-10s": {"task": "bt.ping", "schedule": 10.0, "args": (7,)}})
    schedulers = [Scheduler(app, clock=clock) for _ in range(3)]
    for s in schedulers:
        s.open()
    walk(clock, schedulers, 120)
    got = runs(r)
    dues = [due for _, due in got]
    first = (int(START_S) // 10 + 1) * 10
    assert dues == list(range(first, first + 120, 10))  # every slot once, on the grid, enqueued ahead
    assert len({tid for tid, _ in got}) == len(got)
    assert sum(s.stats.enqueued for s in schedulers) == len(got)
    assert sum(s.stats.already_claimed for s in schedulers) == 2 * len(got)


def test_run_message_is_the_entry_call_with_a_deterministic_id_and_expiry_from_the_slot(
    redis_url: str, r: redis.Redis
) -> None:
    from celeriac.codec import Codec

    clock = FakeClock(START_S)
    spec = {
        "task": "bt.report",
        "schedule": timedelta(seconds=10),
        "args": ("sales",),
        "kwargs": {"fmt": "csv"},
        "options": {"expires": 5, "priority": 3},
    }
    app = make_app(redis_url, {"report": spec})
    s = Scheduler(app, clock=clock)
    s.open()
    walk(clock, [s], 10)
    member, score = r.zrange(DELAYED, 0, 0, withscores=True)[0]
    msg = Codec.from_config(app.conf).decode(member)
    entry = s.tracks["report"].entry
    assert (msg.task, msg.args, dict(msg.kwargs)) == ("bt.report", ("sales",), {"fmt": "csv"})
    assert msg.id == entry.task_id(int(score))
    assert msg.expires_ms == int(score) + 5000


def test_killed_instances_lose_no_slot(redis_url: str, r: redis.Redis) -> None:
    """Instances come and go (a new one replaces a killed one at random): the slots are still gapless."""
    clock = FakeClock(START_S)
    app = make_app(redis_url, {"e": {"task": "bt.ping", "schedule": 1.0}})
    alive = [Scheduler(app, clock=clock) for _ in range(3)]
    for s in alive:
        s.open()
    rnd = random.Random(1)
    for _ in range(240):
        if rnd.random() < 0.1:  # kill one (it just stops ticking) and start another
            alive.pop(rnd.randrange(len(alive)))
            fresh = Scheduler(app, clock=clock)
            fresh.open()
            alive.append(fresh)
        for s in alive:
            s.tick()
        clock.advance(0.25)
    dues = [d for _, d in runs(r)]
    assert dues == list(range(dues[0], dues[0] + len(dues)))
    assert len(dues) >= 59


@pytest.mark.parametrize(
    ("policy", "grace_s", "expected_missed"),
    [("once", None, [90]), ("skip", None, []), ("all", 35.0, [60, 70, 80, 90]), ("once", 4.0, [])],
)
def test_catch_up_policies_after_every_instance_was_down(
    redis_url: str, r: redis.Redis, policy: str, grace_s: float | None, expected_missed: list[int]
) -> None:
    clock = FakeClock(1_700_000_003.0)
    spec: dict[str, Any] = {"task": "bt.ping", "schedule": 10.0, "catch_up": policy}
    if grace_s is not None:
        spec["grace_s"] = grace_s
    app = make_app(redis_url, {"e": spec})
    s = Scheduler(app, clock=clock)
    s.open()
    walk(clock, [s], 20)  # claims 10 and 20 (each 1 s ahead)
    before = [d for _, d in runs(r)]
    assert [d - 1_700_000_000 for d in before] == [10, 20]
    clock.set(1_700_000_095.0)  # everyone was down from 23 s to 95 s: slots 30..90 were missed
    s2 = Scheduler(app, clock=clock)
    s2.open()
    walk(clock, [s2], 5)
    after = [d - 1_700_000_000 for _, d in runs(r)]
    # "all": 30..50 are older than the grace of 35 s; "once" with a grace of 4 s: 90 is 5 s late;
    # 100 is the next slot, enqueued ahead
    assert after == [10, 20, *expected_missed, 100]


def test_restart_without_downtime_catches_nothing_up(redis_url: str, r: redis.Redis) -> None:
    clock = FakeClock(START_S)
    app = make_app(redis_url, {"e": {"task": "bt.ping", "schedule": 10.0, "catch_up": "once"}})
    a = Scheduler(app, clock=clock)
    a.open()
    walk(clock, [a], 30)
    b = Scheduler(app, clock=clock)  # a restart: a new instance, same definition
    b.open()
    walk(clock, [b], 30)
    dues = [d for _, d in runs(r)]
    assert dues == list(range(dues[0], dues[0] + 10 * len(dues), 10))
    assert b.stats.caught_up == 0


def test_crontab_in_app_timezone_across_fall_back_with_a_fake_clock(redis_url: str, r: redis.Redis) -> None:
    ny = get_timezone("America/New_York")
    start = datetime(2026, 10, 31, 23, 50, tzinfo=ny).timestamp()
    clock = FakeClock(start)
    app = make_app(
        redis_url,
        {
            "hourly": {"task": "bt.ping", "schedule": crontab(minute=0), "args": (1,)},
            "nightly": {"task": "bt.ping", "schedule": "30 1 * * *", "args": (2,)},
        },
        timezone="America/New_York",
    )
    s = Scheduler(app, clock=clock)
    s.open()
    walk(clock, [s], 5 * 3600, step_s=30)
    from celeriac.codec import Codec

    codec = Codec.from_config(app.conf)
    by_arg: dict[int, list[str]] = {1: [], 2: []}
    for member, score in r.zrange(DELAYED, 0, -1, withscores=True):
        local = datetime.fromtimestamp(score / 1000, ny).strftime("%H:%M%z")
        by_arg[codec.decode(member).args[0]].append(local)
    assert by_arg[1] == ["00:00-0400", "01:00-0400", "01:00-0500", "02:00-0500", "03:00-0500"]  # 5 real hours
    assert by_arg[2] == ["01:30-0400"]  # once, at the first 01:30


def test_crontab_across_spring_forward_with_a_fake_clock(redis_url: str, r: redis.Redis) -> None:
    paris = get_timezone("Europe/Paris")
    clock = FakeClock(datetime(2026, 3, 28, 12, 0, tzinfo=paris).timestamp())
    app = make_app(
        redis_url,
        {"daily-0230": {"task": "bt.ping", "schedule": crontab(minute=30, hour=2)}},
        timezone="Europe/Paris",
    )
    s = Scheduler(app, clock=clock)
    s.open()
    walk(clock, [s], 3 * 86_400, step_s=600)
    dues = [datetime.fromtimestamp(d, paris).strftime("%m-%d %H:%M%z") for _, d in runs(r)]
    assert dues == ["03-29 03:30+0200", "03-30 02:30+0200", "03-31 02:30+0200"]


# ---- versions: a changed or removed definition never runs again ------------------------------------
def test_changed_definition_withdraws_the_old_run_and_every_instance_follows(
    redis_url: str, r: redis.Redis
) -> None:
    clock = FakeClock(START_S)
    old_app = make_app(redis_url, {"e": {"task": "bt.ping", "schedule": 10.0, "args": (1,)}})
    old = Scheduler(old_app, clock=clock, lead_s=5.0)
    old.open()
    walk(clock, [old], 6)  # slot 10 enqueued (ahead), 3 s before it is due... START+6 = ..009
    assert [m for m in runs(r)] and len(runs(r)) == 1
    new_app = make_app(redis_url, {"e": {"task": "bt.ping", "schedule": 10.0, "args": (2,)}})
    new = Scheduler(new_app, clock=clock, lead_s=5.0)
    new.open()  # deploy: the old run (args 1) is withdrawn from the delayed set
    assert runs(r) == []
    walk(clock, [old, new], 40)
    from celeriac.codec import Codec

    codec = Codec.from_config(new_app.conf)
    members = r.zrange(DELAYED, 0, -1, withscores=True)
    assert {codec.decode(m).args for m, _ in members} == {(2,)}
    dues = sorted(int(s) // 1000 - 1_700_000_000 for _, s in members)
    assert dues == [10, 20, 30, 40, 50]  # slot 10 runs: under the new definition only
    # the old instance follows what Redis holds: it runs the new definition too (never the old one)
    assert old.tracks["e"].digest == new.tracks["e"].digest
    assert old.stats.enqueued + new.stats.enqueued == 1 + 5  # the withdrawn run, then five


def test_removed_from_config_never_runs_again(redis_url: str, r: redis.Redis) -> None:
    clock = FakeClock(START_S)
    app = make_app(
        redis_url,
        {
            "a": {"task": "bt.ping", "schedule": 10.0},
            "b": {"task": "bt.ping", "schedule": 10.0, "args": (5,)},
        },
    )
    s = Scheduler(app, clock=clock, lead_s=5.0)
    s.open()
    walk(clock, [s], 6)
    assert len(runs(r)) == 2
    deployed = make_app(redis_url, {"a": {"task": "bt.ping", "schedule": 10.0}})
    s2 = Scheduler(deployed, clock=clock, lead_s=5.0)
    s2.open()
    assert len(runs(r)) == 1  # b's run withdrawn
    walk(clock, [s, s2], 30)
    assert {e.name for e in (st.entry for st in Beat(deployed, clock=clock).list())} == {"a"}
    from celeriac.codec import Codec

    codec = Codec.from_config(app.conf)
    assert all(codec.decode(m).args == () for m in r.zrange(DELAYED, 0, -1))
    assert r.hkeys("celeriac:{default}:beat") and all(
        k.split(b":", 1)[1] != b"b" for k in r.hkeys("celeriac:{default}:beat")
    )


def test_route_change_moves_the_entry_without_a_double_run(redis_url: str, r: redis.Redis) -> None:
    clock = FakeClock(START_S)
    app = make_app(redis_url, {"e": {"task": "bt.ping", "schedule": 10.0}})
    s = Scheduler(app, clock=clock, lead_s=5.0)
    s.open()
    walk(clock, [s], 6)
    moved = make_app(redis_url, {"e": {"task": "bt.ping", "schedule": 10.0, "options": {"queue": "io"}}})
    s2 = Scheduler(moved, clock=clock, lead_s=5.0)
    s2.open()
    walk(clock, [s, s2], 20)
    assert runs(r) == []  # withdrawn from default
    assert [d - 1_700_000_000 for _, d in runs(r, "celeriac:{io}:delayed")] == [10, 20, 30]


# ---- dynamic entries ------------------------------------------------------------------------------
def test_dynamic_entries_add_pause_resume_remove_run_now(redis_url: str, r: redis.Redis) -> None:
    clock = FakeClock(START_S)
    app = make_app(redis_url, {})
    s = Scheduler(app, clock=clock)
    s.open()
    beat = Beat(app, clock=clock)
    beat.add("dyn", "bt.ping", 10.0, args=[3])
    walk(clock, [s], 26.5)  # picked up within a poll; now 29.5 s: 30 is enqueued ahead
    assert [d - 1_700_000_000 for _, d in runs(r)] == [10, 20, 30]
    status = beat.get("dyn")
    assert (status.last_run_ms, status.next_run_ms) == (1_700_000_020_000, 1_700_000_030_000)
    assert status.active and not status.paused and status.entry.source == "dynamic"
    assert beat.pause("dyn") is True and beat.pause("dyn") is False
    assert [d - 1_700_000_000 for _, d in runs(r)] == [10, 20]  # the run enqueued ahead is withdrawn
    walk(clock, [s], 30)
    assert len(runs(r)) == 2 and beat.get("dyn").paused and beat.get("dyn").next_run_ms is None
    assert beat.resume("dyn") is True
    walk(clock, [s], 20)
    # paused from 29.5 s to 59.5 s: slots 30..50 are not caught up; 60 and 70 run (and 80 ahead)
    assert [d - 1_700_000_000 for _, d in runs(r)] == [10, 20, 60, 70, 80]
    result = beat.run_now("dyn")
    assert r.xlen("celeriac:{default}:ready") == 1 and result.id
    beat.remove("dyn")
    walk(clock, [s], 20)
    assert [d - 1_700_000_000 for _, d in runs(r)] == [10, 20, 60, 70]
    assert beat.list() == []
    with pytest.raises(ConfigurationError, match="no such entry"):
        beat.remove("dyn")


def test_dynamic_add_refuses_bad_input_and_configured_names(redis_url: str) -> None:
    clock = FakeClock(START_S)
    app = make_app(redis_url, {"conf": {"task": "bt.ping", "schedule": 10.0}})
    Scheduler(app, clock=clock).open()
    beat = Beat(app, clock=clock)
    with pytest.raises(ConfigurationError, match="configured entry"):
        beat.add("conf", "bt.ping", 5.0)
    with pytest.raises(ConfigurationError, match=r"'x'.*period"):
        beat.add("x", "bt.ping", 0)
    with pytest.raises(ConfigurationError, match=r"'y'.*out of range"):
        beat.add("y", "bt.ping", "61 * * * *")
    beat.add("z", "other.task", 5.0)  # not registered here: may run on other workers
    with pytest.raises(ConfigurationError, match="exists already"):
        beat.add("z", "other.task", 6.0)
    beat.add("z", "other.task", 6.0, replace=True)
    assert beat.get("z").entry.schedule.definition() == "every 6s"


# ---- configuration ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"task": "bt.nope", "schedule": 5}, "unknown task 'bt.nope'"),
        ({"task": "bt.ping", "schedule": 0}, "period"),
        ({"task": "bt.ping", "schedule": -3.0}, "period"),
        ({"task": "bt.ping", "schedule": timedelta(0)}, "period"),
        ({"task": "bt.ping", "schedule": "* * * *"}, "expected 5"),
        ({"task": "bt.ping", "schedule": "99 * * * *"}, "out of range"),
        ({"task": "bt.ping"}, "missing 'schedule'"),
        ({"task": "bt.ping", "schedule": 5, "args": "abc"}, "'args' must be"),
        ({"task": "bt.ping", "schedule": 5, "args": (1, 2, 3)}, "arguments do not fit"),
        ({"task": "bt.ping", "schedule": 5, "options": {"bogus": 1}}, "unknown option"),
        ({"task": "bt.ping", "schedule": 5, "catch_up": "sometimes"}, "catch_up"),
        ({"task": "bt.ping", "schedule": 5, "catch_up": "all"}, "needs grace_s"),
        ({"task": "bt.ping", "schedule": 5, "shedule": 5}, "unknown key"),
    ],
)
def test_bad_entries_raise_configuration_error_at_start_naming_the_entry(
    redis_url: str, spec: dict[str, Any], problem: str
) -> None:
    app = make_app(redis_url, {"nightly-report": spec})
    with pytest.raises(ConfigurationError, match="nightly-report") as info:
        Scheduler(app, clock=FakeClock(START_S)).open()
    assert problem in str(info.value)


def test_add_periodic_task_from_on_after_configure(redis_url: str, r: redis.Redis) -> None:
    app = make_app(redis_url)

    @app.on_after_configure.connect
    def setup_periodic_tasks(sender: Celeriac, **kwargs: Any) -> None:
        sender.add_periodic_task(10.0, app.tasks["bt.ping"].s(4), name="ping every 10")
        sender.add_periodic_task(
            crontab(minute=0, hour=7, day_of_week=1), app.tasks["bt.report"].s("weekly"), expires=60
        )

    clock = FakeClock(START_S)
    s = Scheduler(app, clock=clock)
    s.open()
    assert set(s.tracks) == {"ping every 10", "bt.report('weekly',)"}
    assert s.tracks["bt.report('weekly',)"].entry.options == {"expires": 60}
    walk(clock, [s], 10)
    assert [d - 1_700_000_000 for _, d in runs(r)] == [10]  # the weekly one is days away


def test_timezone_setting_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        Celeriac(broker="memory://", timezone="Nowhere/Special")
    app = Celeriac(broker="memory://")
    app.conf.timezone = "Europe/Paris"
    with pytest.raises(ConfigurationError, match="beat_schedule"):
        app.conf.beat_schedule = [1]  # type: ignore[assignment]


def test_memory_broker_says_periodic_tasks_need_redis() -> None:
    app = Celeriac(broker="memory://")
    with pytest.raises(ConfigurationError, match="need a Redis broker"):
        Scheduler(app)


def test_idle_scheduler_polls_once_a_second(redis_url: str) -> None:
    clock = FakeClock(START_S)
    app = make_app(redis_url, {"daily": {"task": "bt.ping", "schedule": crontab(minute=0, hour=4)}})
    s = Scheduler(app, clock=clock)
    s.open()
    s.tick()  # the first pass checks once for missed slots
    polls_before, claims_before = s.stats.polls, s.stats.claims
    waits = []
    for _ in range(600):
        waits.append(s.tick())
        clock.advance(0.1)
    assert 50 <= s.stats.polls - polls_before <= 61  # about one command per second, nothing else
    assert s.stats.claims == claims_before
    assert max(waits) <= 1.0


def test_utc_default_and_local_zone_when_enable_utc_is_off(redis_url: str) -> None:
    from celeriac.beat.admin import timezone_of

    app = make_app(redis_url)
    assert timezone_of(app) is timezone.utc
    app.conf.enable_utc = False
    assert timezone_of(app) is not None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_list_and_cli_at_200k_entries(redis_url: str, r: redis.Redis) -> None:
    """`celeriac beat list` (and Beat.list) over 200,000 dynamic entries: read in bounded chunks."""
    import json
    import os
    import subprocess
    import sys
    import time

    from celeriac.beat.entries import make_entry, pack_entry

    app = make_app(redis_url)
    n = 200_000
    template = make_entry(app, "e", {"task": "bt.ping", "schedule": 60.0}, source="dynamic")
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        entry = template.__class__(**{**template.__dict__, "name": f"e{i:06d}"})
        pipe.hset("celeriac:beat:entries", entry.name, pack_entry(entry))
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    started = time.perf_counter()
    listed = Beat(app).list()
    elapsed = time.perf_counter() - started
    assert len(listed) == n and listed[0].entry.name == "e000000" and listed[-1].next_run_ms
    assert elapsed < 60
    proc = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "beat", "list", "--json"],
        env={**os.environ, "CELERIAC_BROKER_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == n and rows[-1]["name"] == "e199999"
    table = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "beat", "list"],
        env={**os.environ, "CELERIAC_BROKER_URL": redis_url, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert table.returncode == 0 and "e199999" in table.stdout and "\x1b[" not in table.stdout
