"""FakeClock: a clock that moves only when a test moves it.

It implements :class:`celeriac._clock.Clock`: give it to an app (``Celeriac(..., clock=clock)``) and
countdowns, ``expires``, expiry checks, the in-memory broker and result store all read it, so delays,
leases and TTLs are tested without waiting. It can also be passed where celeriac takes a ``clock``
callable (``MemoryBroker(clock=...)``, ``MemoryResultBackend(clock=...)``). Moving it calls
the subscribed callbacks, so a sleeping scheduler can re-check due times
(``clock.subscribe(broker.time_changed)``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: 2023-11-14 22:13:20 UTC: a fixed, realistic epoch so ids and due times are reproducible
DEFAULT_START_S = 1_700_000_000.0


class FakeClock:
    """A thread-safe fake of :func:`time.time` (epoch seconds).

    Args:
        start_s: the time it reads until moved.
    """

    def __init__(self, start_s: float = DEFAULT_START_S) -> None:
        self._now = float(start_s)
        self._mono = 0.0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"<FakeClock {self._now:.3f}>"

    def __call__(self) -> float:
        """The current fake time in epoch seconds."""
        return self._now

    def time(self) -> float:
        """Same as calling the clock."""
        return self._now

    def monotonic(self) -> float:
        """Fake monotonic seconds: moved by :meth:`advance` only (never back, unlike :meth:`set`)."""
        return self._mono

    def time_ms(self) -> int:
        """The current fake time in epoch milliseconds (for ``clock_ms`` parameters)."""
        return int(self._now * 1000)

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (>= 0), notify subscribers, and return the new time.

        Raises:
            ValueError: ``seconds`` is negative (a wall clock may jump back, but tests should say so
                explicitly with :meth:`set`).
        """
        if seconds < 0:
            raise ValueError(f"advance() needs seconds >= 0, got {seconds!r}; use set() to go back")
        with self._lock:
            self._now += seconds
            self._mono += seconds
            now = self._now
        self._notify()
        return now

    def set(self, now_s: float) -> None:
        """Jump to ``now_s`` (forward or back) and notify subscribers."""
        with self._lock:
            self._now = float(now_s)
        self._notify()

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from the thread that moves the clock) after every move."""
        with self._lock:
            self._listeners.append(callback)

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()
