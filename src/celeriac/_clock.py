"""One injectable clock for everything in celeriac that reads the time.

An app holds one :class:`Clock` (``Celeriac(clock=...)``, default the system clock). Its wall time
reaches countdowns and ``expires`` at send time, expiry checks and result dates at execution time,
and the in-memory broker and result store (due times, leases, TTLs); its monotonic time is for
durations. The Redis broker and store keep using the Redis server's clock, which is what all
workers agree on. :class:`celeriac.testing.FakeClock` implements this protocol, so under a fake clock
every part of the system sees the same time.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Wall time (epoch seconds) and monotonic time (seconds, for durations)."""

    def time(self) -> float:
        """Seconds since the epoch (may jump when the system clock is set)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        ...


class SystemClock:
    """The process's own clocks (:func:`time.time`, :func:`time.monotonic`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<SystemClock>"

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()


def wall_ms(clock: Clock = SYSTEM_CLOCK) -> int:
    """The clock's wall time in epoch milliseconds."""
    return int(clock.time() * 1000)
