"""Bounded prefetch: take a few more messages than free slots when tasks are short, never more.

Fetching only for free slots costs one read (and one settle) per handful of tasks when tasks are
short: Redis then spends more on the worker's bookkeeping than the tasks are worth. Prefetching
beyond the free slots batches that work, but a prefetched message waits in this worker while
another worker might be idle, so it is bounded twice:

* **by measured task duration**: the extra messages are as many as the slots can start within
  ``budget_s``, at the measured mean interval between task completions (``budget_s / interval``,
  at most ``fetch_max``). The interval, not one task's duration: slots that do not really run in
  parallel (sync tasks under the GIL) free up more slowly than ``duration / concurrency``. Until
  tasks have been measured, and while they are slow, there is no extra: the
  worker fetches for free slots only, as before.
* **by a start deadline**: a message that has not started within ``start_deadline_s`` of its fetch
  goes back to the queue (the worker's ``_execute``), so a long task can never hold short ones
  hostage. A hand-back also forgets the measured mean (tasks just became slow), so prefetching
  stops until short tasks are measured again.

Autoscaled workers do not prefetch (their slot count moves; ``enabled=False``).

Admission to the pool goes through :attr:`Prefetch.slots`, a semaphore of ``concurrency``: a slot
holds it while its task runs; prefetched runs wait for it (that wait is what the deadline bounds).
"""

from __future__ import annotations

import asyncio

__all__ = ["Prefetch"]

#: how long the prefetched messages may take to start, at the measured mean interval between completions
BUDGET_S = 0.005
#: a fetched message that has not started by then goes back to the queue
START_DEADLINE_S = 0.02
#: tasks measured before any prefetch (the mean must mean something)
_WARM_UP = 20
_ALPHA = 0.05  # weight of the newest interval in the moving mean


class Prefetch:
    """The prefetch bound of one worker (see the module docstring)."""

    def __init__(
        self,
        concurrency: int,
        fetch_max: int,
        budget_s: float = BUDGET_S,
        start_deadline_s: float = START_DEADLINE_S,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.concurrency = concurrency
        self.fetch_max = fetch_max
        self.budget_s = budget_s
        self.start_deadline_s = start_deadline_s
        self.slots = asyncio.Semaphore(concurrency)
        #: mean interval between two task completions (slots freeing up)
        self.mean_s = 0.0
        self.measured = 0
        self._last_end_s: float | None = None
        #: prefetched messages handed back because they did not start in time
        self.handed_back = 0

    @property
    def extra(self) -> int:
        """Messages to hold beyond the slots now (0 until measured, and while tasks are slow)."""
        if not self.enabled or self.measured < _WARM_UP or self.mean_s <= 0:
            return 0
        return min(self.fetch_max, int(self.budget_s / self.mean_s))

    def ran(self, now_s: float) -> None:
        """A task ended (in its slot) at ``now_s`` (the loop's clock)."""
        last, self._last_end_s = self._last_end_s, now_s
        if last is None:
            return
        interval_s = now_s - last
        self.measured += 1
        if self.measured == 1:
            self.mean_s = interval_s
        else:
            self.mean_s += _ALPHA * (interval_s - self.mean_s)

    def missed_start(self) -> None:
        """A fetched message did not start in time: forget the mean, prefetch nothing until remeasured."""
        self.handed_back += 1
        self.measured = 0
        self.mean_s = 0.0
        self._last_end_s = None
