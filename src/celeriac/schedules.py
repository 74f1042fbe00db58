"""Periodic schedules: Celery's ``schedule`` (every N seconds) and ``crontab``, as pure functions of time.

A schedule answers one question: *what is the first slot strictly after instant t?* A **slot** is a UTC
instant in epoch milliseconds; it is the identity of one run of a periodic entry, the same on every
machine, so any number of schedulers agree on it without talking to each other (see ``celeriac.beat``).

* :class:`schedule` slots lie on a grid ``offset + k * period`` counted from the Unix epoch, in UTC.
  Celery counts from the last run instead (its intervals drift by the dispatch latency, and two
  schedulers would disagree); a grid is what lets independent instances claim the same slot.
* :class:`crontab` matches local wall-clock fields in a time zone (the entry's ``tz``, else
  ``app.conf.timezone``, else UTC). Day of month **and** day of week must both match, as in Celery
  (Vixie cron matches either). Daylight saving changes follow cron(8) (FreeBSD ``cron -s``):

  - a local time that does not exist (the hour skipped in spring) fires once, at the instant it would
    have had under the old offset (02:30 on a spring-forward night runs at 03:30 new time); when that
    instant is already a slot (an hourly job) the two are one slot, so the skipped hour adds nothing;
  - a local time that happens twice (the hour repeated in autumn) fires once, at its first occurrence,
    unless the entry runs every hour (its hour field matches all 24 hours): then it runs in the
    repeated hour as well, because "every hour" is measured in real time.

Nothing here does I/O or reads a clock: callers pass instants in, which is how the tests drive
schedules with a fake clock across DST changes.
"""

from __future__ import annotations

import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from datetime import tzinfo as TzInfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .exceptions import ConfigurationError

__all__ = ["BaseSchedule", "crontab", "get_timezone", "schedule", "to_schedule"]

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_FULL = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_FULL = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)

# A UTC offset change moves local times by at most this much (modern zones: 1 hour, a few 30 minutes;
# Lord Howe 30 min; historical double summer time 2 hours). Slots near a change are searched within
# this window around the first candidate, because the local -> UTC mapping is not monotonic there.
_MAX_SHIFT = timedelta(hours=3)
# a crontab that matches nothing in this many years never matches (Feb 29 recurs within 8 years)
_SEARCH_YEARS = 9


@lru_cache(maxsize=64)
def get_timezone(name: str | None) -> TzInfo:
    """The ``tzinfo`` for an IANA name (``"Europe/Paris"``); ``None``/``"UTC"`` give UTC.

    Raises:
        ConfigurationError: the name is not a known time zone.
    """
    if name is None or name.upper() in ("UTC", "Z", "ETC/UTC"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            "timezone", f"unknown time zone {name!r} (use an IANA name such as 'Europe/Paris')"
        ) from None


class BaseSchedule(ABC):
    """What every schedule provides. Instants are UTC epoch milliseconds."""

    @abstractmethod
    def next_after(self, after_ms: int, tz: TzInfo | None = None) -> int:
        """The first slot strictly after ``after_ms``. ``tz`` is the zone of wall-clock schedules
        (crontab) that set none of their own; interval schedules ignore it."""

    @abstractmethod
    def definition(self) -> str:
        """A canonical text of this schedule: equal schedules have equal definitions (used in the
        digest that versions a periodic entry, and shown by ``celeriac beat list``)."""

    @property
    @abstractmethod
    def typical_period_ms(self) -> int:
        """About how far apart slots are (the shortest gap for a crontab): sizes the look-ahead."""

    def slots_between(self, after_ms: int, until_ms: int, tz: TzInfo | None = None) -> Iterator[int]:
        """Slots ``s`` with ``after_ms < s <= until_ms``, in order (a generator: take what you need)."""
        slot = self.next_after(after_ms, tz)
        while slot <= until_ms:
            yield slot
            slot = self.next_after(slot, tz)

    def latest_at_or_before(self, at_ms: int, tz: TzInfo | None = None) -> int | None:
        """The last slot ``<= at_ms`` (None if there is none within about nine years)."""
        for window_ms in (3_600_000, 86_400_000, 32 * 86_400_000, 367 * 86_400_000, 9 * 366 * 86_400_000):
            found = None
            for slot in self.slots_between(at_ms - window_ms, at_ms, tz):
                found = slot
            if found is not None:
                return found
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaseSchedule) and other.definition() == self.definition()

    def __hash__(self) -> int:
        return hash(self.definition())

    def __repr__(self) -> str:
        return f"<{self.definition()}>"


class schedule(BaseSchedule):
    """Every ``run_every`` (seconds or a ``timedelta``), on a UTC grid from the Unix epoch.

    Args:
        run_every: the period; must be at least one millisecond.
        offset: shift the grid (``schedule(3600, offset=300)`` runs at five past every hour, UTC).

    Raises:
        ConfigurationError: the period is not a positive number of seconds.
    """

    def __init__(self, run_every: float | timedelta, offset: float | timedelta = 0.0) -> None:
        seconds = run_every.total_seconds() if isinstance(run_every, timedelta) else run_every
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ConfigurationError(
                "schedule", f"the period must be a positive number of seconds, got {run_every!r}"
            )
        self.period_ms = round(seconds * 1000)
        if self.period_ms < 1:
            raise ConfigurationError("schedule", f"the period must be at least 1 ms, got {run_every!r}")
        off = offset.total_seconds() if isinstance(offset, timedelta) else float(offset)
        self.offset_ms = round(off * 1000) % self.period_ms

    @property
    def run_every(self) -> timedelta:
        return timedelta(milliseconds=self.period_ms)

    @property
    def typical_period_ms(self) -> int:
        return self.period_ms

    def next_after(self, after_ms: int, tz: TzInfo | None = None) -> int:
        k = (after_ms - self.offset_ms) // self.period_ms + 1
        return k * self.period_ms + self.offset_ms

    def latest_at_or_before(self, at_ms: int, tz: TzInfo | None = None) -> int | None:
        return (at_ms - self.offset_ms) // self.period_ms * self.period_ms + self.offset_ms

    def definition(self) -> str:
        text = f"every {_seconds_text(self.period_ms)}"
        return text + (f" offset {_seconds_text(self.offset_ms)}" if self.offset_ms else "")


def _seconds_text(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms / 1000:g}s"


# ---- crontab ---------------------------------------------------------------------------------------
_PART = re.compile(r"^(?:(?P<star>\*)|(?P<lo>\w+)(?:-(?P<hi>\w+))?)(?:/(?P<step>\d+))?$")


def _value(token: str, field: str, lo: int, hi: int, names: tuple[tuple[str, ...], ...]) -> int:
    lowered = token.lower()
    for table in names:
        if lowered in table:
            return table.index(lowered) + (lo if field == "month_of_year" else 0)
    if not token.isdigit():
        raise ConfigurationError(f"crontab {field}", f"{token!r} is not a number or a name")
    value = int(token)
    if field == "day_of_week" and value == 7:
        value = 0  # cron: 7 is Sunday too
    if not lo <= value <= hi:
        raise ConfigurationError(f"crontab {field}", f"{value} is out of range {lo}-{hi}")
    return value


def _parse_field(
    spec: Any, field: str, lo: int, hi: int, names: tuple[tuple[str, ...], ...] = ()
) -> frozenset[int]:
    """The set of values a crontab field matches (Celery's syntax: ``*``, ``*/15``, ``1-5``, ``1-30/5``,
    ``mon-fri``, lists ``1,15``; or an int; or an iterable of ints)."""
    top = 6 if field == "day_of_week" else hi
    if isinstance(spec, bool):
        raise ConfigurationError(f"crontab {field}", f"expected a number, text or a list, got {spec!r}")
    if isinstance(spec, int):
        return frozenset({_value(str(spec), field, lo, hi, ())}) if spec >= 0 else _bad(field, spec)
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ConfigurationError(f"crontab {field}", "empty field (use '*' for every value)")
        out: set[int] = set()
        for part in text.split(","):
            m = _PART.match(part.strip())
            if m is None:
                raise ConfigurationError(f"crontab {field}", f"cannot parse {part!r} in {spec!r}")
            step = int(m["step"]) if m["step"] else 1
            if step < 1:
                raise ConfigurationError(f"crontab {field}", f"a step must be at least 1, got {part!r}")
            if m["star"]:
                first, last = lo, top
            else:
                first = _value(m["lo"], field, lo, hi, names)
                last = _value(m["hi"], field, lo, hi, names) if m["hi"] else (top if m["step"] else first)
            if last >= first:
                values = list(range(first, last + 1))
            else:  # a range that wraps around: fri-mon, 22-2
                values = list(range(first, top + 1)) + list(range(lo, last + 1))
            out.update(values[::step])
        return frozenset(out)
    if isinstance(spec, Iterable):
        values_set: set[int] = set()
        for item in spec:
            values_set |= _parse_field(item, field, lo, hi, names)
        if not values_set:
            raise ConfigurationError(f"crontab {field}", "an empty list matches nothing")
        return frozenset(values_set)
    return _bad(field, spec)


def _bad(field: str, spec: Any) -> frozenset[int]:
    raise ConfigurationError(f"crontab {field}", f"expected a number, text or a list, got {spec!r}")


def _compact(values: frozenset[int], lo: int, hi: int) -> str:
    if values == frozenset(range(lo, hi + 1)):
        return "*"
    return ",".join(str(v) for v in sorted(values))


class crontab(BaseSchedule):
    """Runs at the wall-clock times whose fields all match, in a time zone (Celery's ``crontab``).

    Args:
        minute, hour, day_of_week, day_of_month, month_of_year: Celery's fields: ``"*"``, a number,
            ``"*/15"``, ``"9-17"``, ``"1-30/5"``, ``"mon-fri"``, ``"jan,jul"``, a list of numbers.
            ``day_of_week`` counts from Sunday = 0 (7 is Sunday too).
        tz: an IANA time zone name for this entry; default ``app.conf.timezone`` (UTC when unset).

    Raises:
        ConfigurationError: a field does not parse, is out of range, or the fields never match
            together (``day_of_month=31, month_of_year=2``).
    """

    def __init__(
        self,
        minute: Any = "*",
        hour: Any = "*",
        day_of_week: Any = "*",
        day_of_month: Any = "*",
        month_of_year: Any = "*",
        *,
        tz: str | None = None,
    ) -> None:
        self.minutes = _parse_field(minute, "minute", 0, 59)
        self.hours = _parse_field(hour, "hour", 0, 23)
        self.days_of_week = _parse_field(day_of_week, "day_of_week", 0, 7, (_DAY_NAMES, _DAY_FULL))
        self.days_of_month = _parse_field(day_of_month, "day_of_month", 1, 31)
        self.months = _parse_field(month_of_year, "month_of_year", 1, 12, (_MONTH_NAMES, _MONTH_FULL))
        self.tz_name = tz
        self._tz = get_timezone(tz) if tz is not None else None
        self._sorted_minutes = sorted(self.minutes)
        self._sorted_hours = sorted(self.hours)
        #: runs every hour: then a repeated (autumn) hour runs again, by real time (cron(8))
        self.every_hour = len(self.hours) == 24
        if self._next_local(datetime(2000, 1, 1)) is None:
            raise ConfigurationError(
                "crontab", f"{self.definition()!r} never matches (check day_of_month against month_of_year)"
            )

    @classmethod
    def from_string(cls, text: str, *, tz: str | None = None) -> crontab:
        """A crontab from a 5-field cron line: ``"minute hour day_of_month month_of_year day_of_week"``.

        Raises:
            ConfigurationError: not five fields, or a field does not parse.
        """
        if not isinstance(text, str):
            raise ConfigurationError("crontab", f"expected a 5-field cron string, got {text!r}")
        fields = text.split()
        if len(fields) != 5:
            raise ConfigurationError(
                "crontab",
                f"{text!r} has {len(fields)} fields; expected 5: minute hour day-of-month month day-of-week",
            )
        minute, hour, dom, month, dow = fields
        return cls(minute, hour, dow, dom, month, tz=tz)

    @property
    def typical_period_ms(self) -> int:
        if len(self.minutes) > 1 or self.every_hour:
            mins = self._sorted_minutes
            gaps = [b - a for a, b in itertools.pairwise(mins)] + [60 - mins[-1] + mins[0]]
            return min(gaps) * 60_000 if len(mins) > 1 else 3_600_000
        return 86_400_000

    def definition(self) -> str:
        fields = (
            _compact(self.minutes, 0, 59),
            _compact(self.hours, 0, 23),
            _compact(self.days_of_month, 1, 31),
            _compact(self.months, 1, 12),
            _compact(self.days_of_week, 0, 6),
        )
        text = "cron " + " ".join(fields)
        return text + (f" tz={self.tz_name}" if self.tz_name else "")

    # -- matching in local wall-clock time (naive datetimes) ------------------------------------------
    def _day_matches(self, day: datetime) -> bool:
        return day.day in self.days_of_month and (day.weekday() + 1) % 7 in self.days_of_week

    def _next_local(self, start: datetime) -> datetime | None:
        """The first naive local time ``>= start`` (whole minutes) whose fields all match."""
        t = start.replace(second=0, microsecond=0)
        if t < start:
            t += timedelta(minutes=1)
        limit = datetime(min(t.year + _SEARCH_YEARS, 9998), 1, 1)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                later = [h for h in self._sorted_hours if h > t.hour]
                if later:
                    t = t.replace(hour=later[0], minute=0)
                else:
                    t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.minute not in self.minutes:
                later = [m for m in self._sorted_minutes if m > t.minute]
                t = t.replace(minute=later[0]) if later else t.replace(minute=0) + timedelta(hours=1)
                continue
            return t
        return None

    def _instants(self, local: datetime, tz: TzInfo) -> list[int]:
        """The UTC instants (ms) of one matching local time under the cron(8) rules."""
        first = local.replace(tzinfo=tz, fold=0)
        ms = int(first.timestamp()) * 1000
        second = local.replace(tzinfo=tz, fold=1)
        if first.utcoffset() == second.utcoffset():
            return [ms]  # an ordinary time (or a skipped one: fold=0 reads it with the old offset)
        roundtrip = datetime.fromtimestamp(ms / 1000, tz).replace(tzinfo=None)
        if roundtrip != local:
            return [ms]  # skipped (spring): the instant under the old offset, once
        if self.every_hour:  # repeated (autumn): every-hour jobs run again by real time
            return [ms, int(second.timestamp()) * 1000]
        return [ms]  # repeated: the first occurrence only

    def next_after(self, after_ms: int, tz: TzInfo | None = None) -> int:
        zone = self._tz or tz or timezone.utc
        after_local = datetime.fromtimestamp(after_ms / 1000, zone).replace(tzinfo=None)
        # Near an offset change the local -> UTC mapping is not monotonic: a skipped local time maps
        # to an instant after later local times, and the second occurrence of a repeated time lies
        # between local times. So near a change the search starts earlier and goes on a little past
        # the first match; away from changes the first match is the answer.
        start = after_local - _MAX_SHIFT if _near_change(after_ms, zone) else after_local
        best: int | None = None
        best_local: datetime | None = None
        local = self._next_local(start)
        while local is not None:
            if best_local is not None and local > best_local + _MAX_SHIFT:
                break
            for ms in self._instants(local, zone):
                if ms > after_ms and (best is None or ms < best):
                    best, best_local = ms, local
            if best is not None and best_local == local and not _near_change(best, zone):
                break
            local = self._next_local(local + timedelta(minutes=1))
        if best is None:
            raise ConfigurationError("crontab", f"{self.definition()!r} has no run after {after_ms} ms")
        return best


def _near_change(at_ms: int, zone: TzInfo) -> bool:
    """Whether the UTC offset of ``zone`` changes within ``_MAX_SHIFT`` of the instant ``at_ms``."""
    if zone is timezone.utc:
        return False
    at = datetime.fromtimestamp(at_ms / 1000, timezone.utc)
    return (at - _MAX_SHIFT).astimezone(zone).utcoffset() != (at + _MAX_SHIFT).astimezone(zone).utcoffset()


def to_schedule(spec: Any, *, where: str = "schedule") -> BaseSchedule:
    """A schedule from what Celery accepts: a number of seconds, a ``timedelta``, a ``crontab`` or
    ``schedule``, or (celeriac) a 5-field cron string.

    Raises:
        ConfigurationError: naming ``where`` (the entry) when the value is not a valid schedule.
    """
    try:
        if isinstance(spec, BaseSchedule):
            return spec
        if isinstance(spec, str):
            return crontab.from_string(spec)
        if isinstance(spec, (int, float, timedelta)) and not isinstance(spec, bool):
            return schedule(spec)
    except ConfigurationError as exc:
        raise ConfigurationError(where, str(exc)) from None
    raise ConfigurationError(
        where, f"expected seconds, a timedelta, crontab(...), schedule(...) or a cron string, got {spec!r}"
    )
