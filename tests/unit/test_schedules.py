"""Schedules as pure functions of time: Celery's crontab fields, intervals, and cron(8) DST rules.

Dates: US 2026-03-08 (02:00 EST -> 03:00 EDT) and 2026-11-01 (02:00 EDT -> 01:00 EST); Europe
2026-03-29 (02:00 CET -> 03:00 CEST) and 2026-10-25 (03:00 CEST -> 02:00 CET).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from celeriac.exceptions import ConfigurationError
from celeriac.schedules import crontab, get_timezone, schedule, to_schedule
from celeriac.testing import FakeClock

NY = get_timezone("America/New_York")
PARIS = get_timezone("Europe/Paris")
UTC = timezone.utc


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def runs(spec: crontab | schedule, start: datetime, n: int, tz=NY) -> list[str]:  # type: ignore[no-untyped-def]
    """The next n runs after ``start``, as local time with offset (what a person checks)."""
    out, t = [], ms(start)
    for _ in range(n):
        t = spec.next_after(t, tz)
        out.append(datetime.fromtimestamp(t / 1000, tz).strftime("%m-%d %H:%M%z"))
    return out


# ---- fields ---------------------------------------------------------------------------------------
def test_fields_ranges_steps_lists_names() -> None:
    c = crontab(minute="*/15", hour="9-17", day_of_week="mon-fri")
    assert c.minutes == {0, 15, 30, 45}
    assert c.hours == set(range(9, 18))
    assert c.days_of_week == {1, 2, 3, 4, 5}
    assert crontab(minute="1-30/10").minutes == {1, 11, 21}
    assert crontab(minute="5/20").minutes == {5, 25, 45}
    assert crontab(hour=[1, 5, "7-8"]).hours == {1, 5, 7, 8}
    assert crontab(day_of_week="sunday,SAT").days_of_week == {0, 6}
    assert crontab(day_of_week=7).days_of_week == {0}  # cron: 7 is Sunday too
    assert crontab(day_of_week="fri-mon").days_of_week == {5, 6, 0, 1}  # wraps
    assert crontab(month_of_year="jan,jul-aug").months == {1, 7, 8}
    assert crontab(minute=0, hour=0).definition() == "cron 0 0 * * *"


def test_from_string_takes_cron_field_order() -> None:
    c = crontab.from_string("30 9 1-7 * mon")
    assert (c.minutes, c.hours, c.days_of_month, c.days_of_week) == ({30}, {9}, set(range(1, 8)), {1})
    assert to_schedule("*/5 * * * *") == crontab(minute="*/5")


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"minute": 60}, "out of range"),
        ({"hour": "25"}, "out of range"),
        ({"day_of_week": "funday"}, "not a number or a name"),
        ({"minute": "*/0"}, "step"),
        ({"minute": ""}, "empty"),
        ({"minute": "1-"}, "cannot parse"),
        ({"day_of_month": 31, "month_of_year": 2}, "never matches"),
        ({"minute": 1.5}, "expected"),
        ({"minute": True}, "expected"),
    ],
)
def test_invalid_crontab_is_a_clear_configuration_error(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        crontab(**kwargs)  # type: ignore[arg-type]


def test_invalid_cron_string_and_schedule() -> None:
    with pytest.raises(ConfigurationError, match="expected 5"):
        crontab.from_string("* * * *")
    for bad in (0, -1, timedelta(0), 0.0001):
        with pytest.raises(ConfigurationError, match="period"):
            schedule(bad)
    with pytest.raises(ConfigurationError, match="expected seconds"):
        to_schedule(None)
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        crontab(tz="Mars/Olympus")


def test_day_of_month_and_day_of_week_must_both_match_as_in_celery() -> None:
    # Friday the 13th at noon (Vixie cron would also run on every 13th and every Friday)
    c = crontab(minute=0, hour=12, day_of_month=13, day_of_week="fri")
    assert runs(c, datetime(2026, 1, 1, tzinfo=UTC), 3, UTC) == [
        "02-13 12:00+0000",
        "03-13 12:00+0000",
        "11-13 12:00+0000",
    ]


def test_feb_29_is_found_years_ahead() -> None:
    c = crontab(minute=0, hour=0, day_of_month=29, month_of_year=2)
    assert runs(c, datetime(2026, 1, 1, tzinfo=UTC), 2, UTC) == ["02-29 00:00+0000", "02-29 00:00+0000"]
    t = c.next_after(ms(datetime(2026, 1, 1, tzinfo=UTC)), UTC)
    assert datetime.fromtimestamp(t / 1000, UTC).year == 2028


def test_business_hours_skip_the_weekend() -> None:
    c = crontab.from_string("*/30 9-17 * * mon-fri")
    # Friday 2026-12-04 17:20 New York: 17:30 then Monday 09:00
    assert runs(c, datetime(2026, 12, 4, 17, 20, tzinfo=NY), 3) == [
        "12-04 17:30-0500",
        "12-07 09:00-0500",
        "12-07 09:30-0500",
    ]


# ---- intervals ------------------------------------------------------------------------------------
def test_interval_slots_lie_on_a_utc_grid_every_instance_agrees_on() -> None:
    s = schedule(timedelta(seconds=30))
    assert s.next_after(1_700_000_000_000) == 1_700_000_010_000  # next multiple of 30 s since the epoch
    assert s.next_after(1_700_000_010_000) == 1_700_000_040_000  # strictly after
    assert s.latest_at_or_before(1_700_000_039_999) == 1_700_000_010_000
    assert schedule(3600, offset=300).next_after(0) == 300_000
    assert list(schedule(10).slots_between(0, 35_000)) == [10_000, 20_000, 30_000]
    assert s == schedule(30.0) and s != schedule(31)


def test_interval_is_dst_free() -> None:
    s = schedule(3600)
    assert runs(s, datetime(2026, 3, 8, 0, 30, tzinfo=NY), 4) == [
        "03-08 01:00-0500",
        "03-08 03:00-0400",  # one real hour later
        "03-08 04:00-0400",
        "03-08 05:00-0400",
    ]


# ---- DST: spring forward (a local hour is skipped) --------------------------------------------------
def test_daily_job_in_the_skipped_hour_runs_once_an_hour_later() -> None:
    c = crontab(minute=30, hour=2)
    assert runs(c, datetime(2026, 3, 6, 12, tzinfo=NY), 4) == [
        "03-07 02:30-0500",
        "03-08 03:30-0400",  # 02:30 does not exist: the same instant as under the old offset
        "03-09 02:30-0400",
        "03-10 02:30-0400",
    ]


def test_hourly_job_skips_the_skipped_hour_without_a_double_run() -> None:
    c = crontab(minute=30)
    assert runs(c, datetime(2026, 3, 8, 0, 0, tzinfo=NY), 4) == [
        "03-08 00:30-0500",
        "03-08 01:30-0500",
        "03-08 03:30-0400",  # 02:30 and 03:30 are the same instant: one run
        "03-08 04:30-0400",
    ]


def test_every_15_minutes_across_spring_forward_in_paris() -> None:
    c = crontab(minute="*/15")
    got = runs(c, datetime(2026, 3, 29, 1, 40, tzinfo=PARIS), 5, PARIS)
    assert got == [
        "03-29 01:45+0100",
        "03-29 03:00+0200",
        "03-29 03:15+0200",
        "03-29 03:30+0200",
        "03-29 03:45+0200",
    ]


def test_range_over_the_skipped_hour_runs_once_per_instant() -> None:
    c = crontab(minute=30, hour="1-3")
    assert runs(c, datetime(2026, 3, 8, 0, 0, tzinfo=NY), 3) == [
        "03-08 01:30-0500",
        "03-08 03:30-0400",
        "03-09 01:30-0400",
    ]


# ---- DST: fall back (a local hour is repeated) ----------------------------------------------------
def test_daily_job_in_the_repeated_hour_runs_once_at_the_first_occurrence() -> None:
    c = crontab(minute=30, hour=1)
    assert runs(c, datetime(2026, 10, 31, 12, tzinfo=NY), 3) == [
        "11-01 01:30-0400",
        "11-02 01:30-0500",
        "11-03 01:30-0500",
    ]
    # asked from inside the repeated hour, after the first occurrence: not again that night
    after_first = datetime(2026, 11, 1, 5, 45, tzinfo=UTC)  # 01:45 EDT
    assert runs(c, after_first, 1) == ["11-02 01:30-0500"]
    second = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # 01:10 EST, the second 01:xx
    assert runs(c, second, 1) == ["11-02 01:30-0500"]


def test_hourly_job_runs_in_the_repeated_hour_as_well() -> None:
    c = crontab(minute="0,30")
    assert runs(c, datetime(2026, 11, 1, 0, 10, tzinfo=NY), 7) == [
        "11-01 00:30-0400",
        "11-01 01:00-0400",
        "11-01 01:30-0400",
        "11-01 01:00-0500",  # every hour means every real hour
        "11-01 01:30-0500",
        "11-01 02:00-0500",
        "11-01 02:30-0500",
    ]


def test_paris_fall_back_fixed_time_once() -> None:
    c = crontab(minute=30, hour=2)
    assert runs(c, datetime(2026, 10, 24, 12, tzinfo=PARIS), 2, PARIS) == [
        "10-25 02:30+0200",
        "10-26 02:30+0100",
    ]


def test_entry_tz_overrides_the_app_zone() -> None:
    c = crontab(minute=0, hour=9, tz="Asia/Tokyo")
    t = c.next_after(ms(datetime(2026, 5, 31, 12, tzinfo=UTC)), NY)  # the passed zone is ignored
    assert datetime.fromtimestamp(t / 1000, UTC).strftime("%m-%d %H:%M") == "06-01 00:00"
    assert c.definition().endswith("tz=Asia/Tokyo")


def test_a_year_of_hourly_slots_with_a_fake_clock_has_no_gap_or_duplicate() -> None:
    """Walk a whole year hour by hour (both DST changes) with a fake clock: every instant is one slot,
    23 runs on the spring day and 25 on the autumn day."""
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=NY).timestamp())
    c = crontab(minute=0)
    seen: list[int] = []
    t = clock.time_ms() - 1  # the first slot is midnight itself
    end = ms(datetime(2027, 1, 1, tzinfo=NY))
    while True:
        t = c.next_after(t, NY)
        if t >= end:
            break
        seen.append(t)
        clock.set(t / 1000)
    assert len(seen) == len(set(seen)) == 365 * 24
    assert all(b - a == 3_600_000 for a, b in zip(seen, seen[1:]))
    per_day: dict[str, int] = {}
    for s in seen:
        day = datetime.fromtimestamp(s / 1000, NY).strftime("%m-%d")
        per_day[day] = per_day.get(day, 0) + 1
    assert per_day["03-08"] == 23 and per_day["11-01"] == 25


def test_daily_job_a_whole_year_runs_once_a_day() -> None:
    c = crontab(minute=30, hour=2)
    t = ms(datetime(2026, 1, 1, tzinfo=NY))
    days = set()
    for _ in range(365):
        t = c.next_after(t, NY)
        days.add(datetime.fromtimestamp(t / 1000, NY).strftime("%m-%d"))
    assert len(days) == 365
