"""Autoscale: concurrency follows the backlog, between MIN and MAX (``--autoscale MAX,MIN``).

Grow fast: a fetch that fills every free slot wakes the autoscaler at once (and it also looks every
second while all slots are busy). When every slot is busy and the queues hold ready messages, the
worker grows to ``running + backlog`` slots, up to MAX, in one step; the next fetch takes them.
Shrink slowly: every ``idle_s`` (30 s) it shrinks to the most slots used at once during that window,
never below MIN. So a burst is met at once, and capacity is given back once it is not used.

The backlog is the ready (undelivered) messages of the worker's queues, read from Redis only when
every slot is busy, at most once a second. It is shared with other workers of the same queues, which
may all grow for it: MAX bounds each of them.

The pools follow: the processes pool starts or stops children, the thread pools start threads on
demand and let surplus idle ones end; the asyncio pool's slots are just a number.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..exceptions import ConfigurationError

DEFAULT_IDLE_S = 30.0


@dataclass(frozen=True)
class Autoscale:
    """Autoscale bounds.

    Attributes:
        max: most execution slots (children for ``processes``).
        min: fewest slots; the worker starts with these.
        idle_s: how long unused slots are kept before the worker shrinks.
    """

    max: int
    min: int = 1
    idle_s: float = DEFAULT_IDLE_S

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.max:
            raise ConfigurationError(
                "autoscale", f"needs 1 <= MIN <= MAX, got MAX={self.max}, MIN={self.min}"
            )
        if not self.idle_s > 0:
            raise ConfigurationError("autoscale", f"idle time must be > 0, got {self.idle_s!r}")

    @classmethod
    def parse(cls, text: str, idle_s: float = DEFAULT_IDLE_S) -> Autoscale:
        """``"10,2"`` (MAX,MIN, as Celery) or ``"10"`` (MIN 1).

        Raises:
            ConfigurationError: not ``MAX[,MIN]`` with 1 <= MIN <= MAX (a ValueError).
        """
        parts = [p.strip() for p in text.split(",")]
        if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
            raise ConfigurationError("autoscale", f"expected MAX,MIN (for example 10,2), got {text!r}")
        maximum = int(parts[0])
        minimum = int(parts[1]) if len(parts) == 2 else 1
        return cls(maximum, minimum, idle_s)

    def grow_to(self, current: int, running: int, backlog: int) -> int:
        """The new size when every slot is busy and ``backlog`` messages wait (``current`` if none)."""
        if backlog <= 0 or running < current:
            return current
        return max(current, min(self.max, running + backlog))

    def shrink_to(self, current: int, peak: int) -> int:
        """The new size after an idle window in which at most ``peak`` slots were used at once."""
        return max(self.min, min(current, peak))


class Autoscaler:
    """The autoscale decisions of one worker run; no I/O (the worker reads the backlog and resizes).

    Args:
        bounds: MAX, MIN and the idle window.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, bounds: Autoscale, clock: Callable[[], float] = time.monotonic) -> None:
        self.bounds = bounds
        self._clock = clock
        self._peak = 0  # most slots used at once in the current window
        self._window_started = clock()

    def task_started(self, running: int) -> None:
        self._peak = max(self._peak, running)

    def wants_backlog(self, current: int, running: int) -> bool:
        """True when growing is possible and needed if messages wait: read the backlog then."""
        return running >= current and current < self.bounds.max

    def next_size(self, current: int, running: int, backlog: int | None) -> int:
        """The size to have now (``backlog``: ready messages, or None when not read)."""
        grown = self.bounds.grow_to(current, running, backlog) if backlog is not None else current
        if grown > current:
            self._new_window(running)  # do not shrink right after growing
            return grown
        if self._clock() - self._window_started >= self.bounds.idle_s:
            size = self.bounds.shrink_to(current, self._peak)
            self._new_window(running)
            return size
        return current

    def _new_window(self, running: int) -> None:
        self._window_started = self._clock()
        self._peak = running
