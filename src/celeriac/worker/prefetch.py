"""Bounded prefetch: take a few more messages than free slots when tasks are short, never more.

Fetching only for free slots costs one read (and one settle) per handful of tasks when tasks are
short: Redis then spends more on the worker's bookkeeping than the tasks are worth. Prefetching
beyond the free slots batches that work, but a prefetched message waits in this worker while
another worker might be idle, so it is bounded twice:

* **by measured task duration**: the extra messages are as many as the slots can start within
  ``budget_s``, at the measured mean interval between task completions (``budget_s / interval``;
  four at least, or as many as start within the start deadline, so that the buffer is refilled
  before it runs dry; at most ``fetch_max``). The interval, not one task's duration: slots that do
  not really run in parallel (sync tasks under the GIL) free up more slowly than
  ``duration / concurrency``. Until tasks have been measured, and while they are slow, there is no
  extra: the worker fetches for free slots only, as before.
* **by a start deadline**: a message that has not started within ``start_deadline_s`` of its fetch
  goes back to the queue (the worker's ``_execute``), so a long task can never hold short ones
  hostage. A hand-back also forgets the measured mean (tasks just became slow), so prefetching
  stops until short tasks are measured again.

* **by measured run time**: tasks whose mean run time (from a slot's start to its end; for the
  processes pool the task's own run time in its child, from the child's answer: the worker's latency
  in noticing an end is not time a prefetched message waits behind the task, and on a busy machine
  it doubled a 5 ms task's measured time) exceeds ``budget_s`` are not prefetched at all: a
  prefetched message would wait longer than the budget behind any of them. Once prefetching, it
  stops only when the mean run time exceeds the start deadline: a busy machine stretches the runs of
  tasks that take half the budget (5 ms of CPU on a loaded machine last 10 ms and more), and with a
  single bound their prefetch went on and off, each off costing a round trip of idle slot per task
  (and a settle per task). A message waits at most about the start deadline behind such runs, which
  the deadline enforces anyway.
* **by flow**: the extra is taken only while slots are freeing (a run ended within ``flow_s``, the budget):
  an idle worker, or one whose every slot holds a long task, fetches for its free slots only, so a
  short task is never fetched to wait behind long ones (:meth:`Prefetch.to_fetch`).

While the pool is busy with short tasks, a fetch takes at least two messages (one beyond the freed
slot) and the buffer is refilled only when a quarter of it is left (:meth:`Prefetch.refill_wanted`):
fewer fetches per task, and no wake-up of the fetch loop at the end of a run that would not fetch.

Autoscaled workers do not prefetch (their slot count moves; ``enabled=False``).

Admission to the pool goes through :attr:`Prefetch.slots`, a :class:`~celeriac.worker.slotgate.SlotGate`
of ``concurrency`` (see that module).
"""

from __future__ import annotations

from .slotgate import START_DEADLINE_S, START_LIMIT_S, SlotGate

__all__ = ["Prefetch"]

#: how long the prefetched messages may take to start, at the measured mean interval between completions
BUDGET_S = 0.01
#: while the slots are busy, outcomes are recorded in batches of about this many (SETTLE_LINGER_MAX_S at most)
SETTLE_BATCH = 64
SETTLE_LINGER_MAX_S = 0.01
#: the least extra once tasks are measured short (:attr:`Prefetch.extra`)
MIN_EXTRA = 4
#: tasks measured before any prefetch (the mean must mean something)
_WARM_UP = 20
#: runs timed before their mean run time allows the least prefetch (one beyond a freed slot)
_RUN_WARM_UP = 4
_RUN_ALPHA = 0.1  # weight of the newest run time in the mean run time
_ALPHA = 0.3  # weight of the newest window's interval in the moving mean
_WINDOW_S = 0.02  # completions are counted over windows of at least this long


class Prefetch:
    """The prefetch bound of one worker (see the module docstring)."""

    def __init__(
        self,
        concurrency: int,
        fetch_max: int,
        budget_s: float = BUDGET_S,
        start_deadline_s: float = START_DEADLINE_S,
        enabled: bool = True,
        flow_s: float | None = None,
    ) -> None:
        self.enabled = enabled
        #: slots are "flowing" while a run ended within this long (``budget_s`` unless given)
        self.flow_s = budget_s if flow_s is None else flow_s
        self.concurrency = concurrency
        self.fetch_max = fetch_max
        self.budget_s = budget_s
        self.start_deadline_s = start_deadline_s
        self.slots = SlotGate(concurrency, start_deadline_s, START_LIMIT_S)
        #: mean interval between two task completions (slots freeing up)
        self.mean_s = 0.0
        self.measured = 0
        self._last_end_s: float | None = None  # the start of the current window
        self._window_n = 0  # completions in it
        #: prefetched messages handed back because they did not start in time
        self.handed_back = 0
        #: mean run time of a task in its slot (from admission to end), and runs timed
        self.run_mean_s = 0.0
        self.timed = 0
        #: tasks too slow to prefetch: from a first run beyond the budget until the mean run time is
        #: within it, and again once it exceeds the start deadline (the module docstring's hysteresis)
        self.slow = False
        #: the loop's clock when a run last ended (slots are "flowing" within ``flow_s`` of it)
        self.last_ran_s = float("-inf")
        self._prev_ran_s = float("-inf")  # the end before it

    @property
    def extra(self) -> int:
        """Messages to hold beyond the slots (0 until measured, and while tasks are slow: completions
        further apart than the budget, or a mean run time beyond it)."""
        if not self.enabled or self.measured < _WARM_UP or self.mean_s <= 0:
            return 0
        if self.slow:  # a prefetched message would wait too long behind them
            return 0
        n = int(self.budget_s / self.mean_s)
        if n < 1:
            return 0
        # Measured short: MIN_EXTRA at least, as many as start within the start deadline. With two,
        # the buffer is refilled only once empty (two at a time, to_fetch), and a slot that frees
        # while that read is on its way finds nothing to run: its process idles for a round trip.
        # With four, one is still queued when a read of three goes (a read per three tasks, not two).
        floor = min(MIN_EXTRA, int(self.start_deadline_s / self.mean_s))
        return min(self.fetch_max, max(n, floor))

    def to_fetch(self, running: int, now_s: float) -> int:
        """How many messages to fetch now (0: none, wait until a run ends).

        ``running`` counts the runs this worker holds, prefetched ones waiting for a slot included.
        Free slots are always filled. The extra is taken only while slots are flowing (a run ended
        within ``flow_s``, the budget): never for an idle worker, nor while long tasks hold every slot. While
        the slots flow with short tasks (their mean run time within the budget) a fetch takes at
        least one message beyond the free slots: two at a time, not one per slot that frees. With
        every slot busy, the buffer is refilled only when a quarter of it is left, and by two at least.
        """
        free = self.concurrency - running
        if now_s - self.last_ran_s > self.flow_s:  # idle, or every slot held by a long task
            return free if free > 0 else 0
        extra = self.extra
        if extra < 1 and self.timed >= _RUN_WARM_UP and self.run_mean_s <= self.budget_s:
            extra = 1  # short tasks not measured enough for a buffer yet: one beyond the slots
        room = free + extra
        if free > 0:
            return room
        return room if room >= 2 and room >= (3 * extra) // 4 else 0

    def refill_wanted(self, running: int, now_s: float) -> bool:
        """A run just ended: is a fetch wanted now (:meth:`to_fetch`)? If not, the fetch loop is not
        woken: a later end (or a settle, or a hand-back) wakes it when it is."""
        return self.concurrency > running or self.to_fetch(running, now_s) > 0

    def settle_linger_s(self) -> float:
        """How long a batch of outcomes may wait for more: 0 unless the slots are busy (completions
        measured at most ``budget_s`` apart on average, and the last two within it), then the time
        ``SETTLE_BATCH`` tasks take, at most ``SETTLE_LINGER_MAX_S``.

        Not only while prefetching: a busy pool of tasks too slow to prefetch (5 ms CPU tasks on a
        loaded machine) would otherwise record every outcome in a round trip of its own. The first
        outcome after a pause is recorded at once (no latency added to a lone task).
        """
        if (
            not self.enabled
            or self.measured < _WARM_UP
            or not 0 < self.mean_s <= self.budget_s
            or self.last_ran_s - self._prev_ran_s > self.budget_s
        ):
            return 0.0
        return min(SETTLE_LINGER_MAX_S, SETTLE_BATCH * self.mean_s)

    def ran(self, now_s: float, run_s: float = 0.0) -> None:
        """A task ended (in its slot) at ``now_s`` (the loop's clock), after ``run_s`` in its slot.

        The mean interval is measured over windows of at least ``_WINDOW_S`` (completions per window),
        not between two completions: the loop learns of completions in bursts (several threads or
        children finished while it ran something else), and intervals of 0 between them would make
        the worker look far faster than it is.
        """
        self._prev_ran_s, self.last_ran_s = self.last_ran_s, now_s
        if self.timed:
            self.run_mean_s += _RUN_ALPHA * (run_s - self.run_mean_s)
        else:
            self.run_mean_s = run_s
        self.timed += 1
        if self.run_mean_s <= self.budget_s:
            self.slow = False
        elif self.timed == 1 or self.run_mean_s > self.start_deadline_s:
            self.slow = True
        if self._last_end_s is None:
            self._last_end_s, self._window_n = now_s, 0
            return
        self._window_n += 1
        elapsed_s = now_s - self._last_end_s
        if elapsed_s < _WINDOW_S:
            return
        interval_s = elapsed_s / self._window_n
        self.measured += self._window_n
        self._last_end_s, self._window_n = now_s, 0
        if self.mean_s <= 0:
            self.mean_s = interval_s
        else:
            self.mean_s += _ALPHA * (interval_s - self.mean_s)

    def missed_start(self) -> None:
        """A fetched message did not start in time: forget the mean, prefetch nothing until remeasured."""
        self.handed_back += 1
        self.measured = 0
        self.mean_s = 0.0
        self._last_end_s = None
        self.timed = 0
        self.run_mean_s = 0.0
        self.slow = False  # the next first run decides
