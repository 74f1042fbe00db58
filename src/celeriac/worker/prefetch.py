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

* **by measured run time**: tasks whose mean run time (from a slot's start to its end) exceeds
  ``budget_s`` are not prefetched at all: a prefetched message would wait longer than the budget
  behind any of them.
* **by flow**: the extra is taken only while slots are freeing (a run ended within ``flow_s``, the budget):
  an idle worker, or one whose every slot holds a long task, fetches for its free slots only, so a
  short task is never fetched to wait behind long ones (:meth:`Prefetch.to_fetch`).

While the pool is busy with short tasks, a fetch takes at least two messages (one beyond the freed
slot) and the buffer is refilled only when a quarter of it is left (:meth:`Prefetch.refill_wanted`):
fewer fetches per task, and no wake-up of the fetch loop at the end of a run that would not fetch.

Autoscaled workers do not prefetch (their slot count moves; ``enabled=False``).

Admission to the pool goes through :attr:`Prefetch.slots`, a :class:`SlotGate` of ``concurrency``: a
slot holds it while its task runs; prefetched runs wait for it (that wait is what the deadline bounds).
A pool that learns of a task's end before the worker's run does (the processes pool: the child's
answer) hands the slot on at once (:meth:`SlotGate.pass_on`): the next prefetched run reaches the
freed child without waiting for the finished run's outcome to be recorded and settled.

A pool that queues calls itself (the threads pool: ``queues_calls``) is handed a waiting run's call at
once (:meth:`SlotGate.enqueue`): it waits in the pool's queue, where a thread that finishes a call
takes the next without the loop's help, instead of the run waiting on the loop (a future, a timer and
a turn of the loop per run). The gate still hands its slots out in order and keeps the start deadline
(one timer for all such waits): a call no thread took by then is withdrawn, and its delivery goes back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, Protocol, TypeAlias

__all__ = ["Prefetch", "QueuedWait", "SlotGate"]

#: how long the prefetched messages may take to start, at the measured mean interval between completions
BUDGET_S = 0.01
#: a fetched message that has not started by then goes back to the queue, unless slots are still freeing
#: (tasks flow: it is queued, not held), and then by ``START_LIMIT_S`` at the latest
START_DEADLINE_S = 0.02
START_LIMIT_S = 0.1
#: while the slots are busy, outcomes are recorded in batches of about this many (SETTLE_LINGER_MAX_S at most)
SETTLE_BATCH = 64
SETTLE_LINGER_MAX_S = 0.01
#: while a run waits for a slot, the loop's lateness is measured every _TICK_S; lateness beyond
#: _STALL_SLACK_S is time the worker did not run (it does not count against the start deadline)
_TICK_S = 0.005
_STALL_SLACK_S = 0.002
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
        #: the loop's clock when a run last ended (slots are "flowing" within ``flow_s`` of it)
        self.last_ran_s = float("-inf")
        self._prev_ran_s = float("-inf")  # the end before it

    @property
    def extra(self) -> int:
        """Messages to hold beyond the slots (0 until measured, and while tasks are slow: completions
        further apart than the budget, or a mean run time beyond it)."""
        if not self.enabled or self.measured < _WARM_UP or self.mean_s <= 0:
            return 0
        if self.run_mean_s > self.budget_s:  # a prefetched message would wait longer than the budget
            return 0
        return min(self.fetch_max, int(self.budget_s / self.mean_s))

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


class SlotGate:
    """A semaphore whose waits end at a deadline, without a task per wait.

    ``asyncio.wait_for(semaphore.acquire(), t)`` wraps every wait in a task of its own: with prefetch
    nearly every short task waits here once, and that cost the worker more than the wait itself. A
    waiter here is one future and one timer; a freed slot goes straight to the oldest waiter.

    A wait ends (False: the delivery goes back) ``deadline_s`` after the fetch, unless

    * a slot freed within the last ``deadline_s``: tasks are flowing and the waiter is only queued
      behind them (it moves up with every slot freed), so it waits on, up to ``limit_s``;
    * the worker itself did not run for part of that time (a busy machine deschedules it; its loop's
      timers fire late, measured by a tick every 5 ms while someone waits): that time does not count.
      A stalled worker would otherwise hand back what it is about to start, and nothing starts
      anywhere faster on a machine that stalls every process.

    Slots held by long tasks free nothing while the worker runs: their waiters go back at ``deadline_s``.
    """

    def __init__(
        self, size: int, deadline_s: float = START_DEADLINE_S, limit_s: float = START_LIMIT_S
    ) -> None:
        self.free = size
        self.deadline_s = deadline_s
        self.limit_s = max(limit_s, deadline_s)
        self._waiters: deque[_Waiter] = deque()
        self._freed_at = float("-inf")  # the loop's clock when a slot last freed
        #: seconds the loop ran late (the worker did not run), measured while someone waits
        self._stalled_s = 0.0
        self._tick: asyncio.TimerHandle | None = None
        self._tick_due = 0.0
        #: slots handed on early (pass_on) whose runs have not released them yet
        self.passed = 0
        #: waits of :meth:`take` going on (runs parked on the loop until they get a slot)
        self.parked = 0
        self._queued = 0  # waits of :meth:`enqueue` made (a count: tests read it)
        self._check: asyncio.Handle | None = None  # the next look at the queued waits' deadlines

    def locked(self) -> bool:
        return self.free <= 0

    def try_take(self) -> bool:
        """Take a free slot now; False when none is free."""
        if self.free > 0:
            self.free -= 1
            return True
        return False

    async def take(self, loop: asyncio.AbstractEventLoop, fetched_at: float) -> bool:
        """A slot (True), or False when none freed in time (see the class docstring)."""
        if self.try_take():
            return True
        waiter: asyncio.Future[bool] = loop.create_future()
        timer = self._wait(loop, waiter, fetched_at)
        self.parked += 1
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # handed a slot just as it was cancelled: pass it on
            raise
        finally:
            self.parked -= 1
            timer.cancel()
            if not waiter.done():
                waiter.cancel()

    def enqueue(self, loop: asyncio.AbstractEventLoop, fetched_at: float) -> QueuedWait:
        """Wait for a slot without parking the run: for a pool that queues calls itself (the threads
        pool), so that a thread that finishes a call takes the next one without the loop's help.

        The run hands its call to the pool at once; the pool attaches it (:meth:`QueuedWait.attach`).
        A freed slot goes to the oldest waiter, as with :meth:`take`; at the deadline the call is
        withdrawn unless a thread took it already (the pool then raises :class:`NotStarted` in the run,
        which hands its delivery back). The caller must have tried :meth:`try_take` first, and must call
        :meth:`QueuedWait.end` when its run ends without the slot (:attr:`QueuedWait.admitted` False).
        """
        now = loop.time()
        waiter = QueuedWait(fetched_at, fetched_at + self.deadline_s, self._stalled(now))
        self._waiters.append(waiter)
        self._queued += 1
        if self._tick is None:
            self._tick_due = now + _TICK_S
            self._tick = loop.call_at(self._tick_due, self._on_tick, loop)
        if self._check is None:  # one timer for every queued wait, not one each
            self._check = loop.call_at(waiter.check_s, self._check_queued, loop)
        return waiter

    def _wait(
        self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool], fetched_at: float
    ) -> asyncio.TimerHandle:
        self._waiters.append(waiter)
        if self._tick is None:
            self._tick_due = loop.time() + _TICK_S
            self._tick = loop.call_at(self._tick_due, self._on_tick, loop)
        stalled_before = self._stalled(loop.time())
        return loop.call_at(
            fetched_at + self.deadline_s, self._expire, loop, waiter, fetched_at, stalled_before
        )

    def _check_queued(self, loop: asyncio.AbstractEventLoop, hops: int = 2) -> None:
        """The deadlines of the queued waits (:meth:`enqueue`), as :meth:`_expire` decides one parked
        wait's, for every wait due: their deadlines come in the order they were queued."""
        if hops:  # decide after the loop ran what was already ready (see _expire)
            self._check = loop.call_soon(self._check_queued, loop, hops - 1)
            return
        self._check = None
        now = loop.time()
        stalled = self._stalled(now)
        flowing = now - self._freed_at < self.deadline_s
        next_s = float("inf")
        waiting = 0
        for waiter in self._waiters:
            if not isinstance(waiter, QueuedWait) or waiter.done():
                continue
            waiting += 1
            if waiter.deadline_s > now:  # not due, nor any queued after it
                next_s = min(next_s, waiter.deadline_s)
                break
            if waiter.check_s > now or waiter.started():  # looked at lately; a thread took its call
                next_s = min(next_s, waiter.check_s) if waiter.check_s > now else next_s
                continue
            ran_s = now - waiter.fetched_at - (stalled - waiter.stalled_before)  # time the worker ran
            if ran_s < self.limit_s and (ran_s < self.deadline_s or flowing):
                # stalled, or queued behind flowing tasks (not held): look again a little later
                waiter.check_s = now + max(self.deadline_s - ran_s, self.deadline_s / 2)
                next_s = min(next_s, waiter.check_s)
                continue
            waiter.set_result(False)
        if waiting and next_s == float("inf"):  # only calls that threads took: look again later
            next_s = now + self.deadline_s / 2
        if next_s < float("inf"):
            # at most every _TICK_S: deadlines a few milliseconds apart are decided together
            self._check = loop.call_at(max(next_s, now + _TICK_S), self._check_queued, loop)

    def pass_on(self) -> bool:
        """A run's task has ended but its run has not released its slot yet (the processes pool: a
        child answered; the run still records the outcome): hand the slot to the oldest waiter now.

        True when a waiter took it: the run's own :meth:`release` then frees nothing (one release is
        owed per pass; which run pays it does not matter, each of them releases once). False when
        nobody waits: the run's release frees the slot as usual. Call it at most once per run, and
        only for a run that will release its slot.
        """
        if not self._waiters:
            return False
        if self._tick is not None:
            with contextlib.suppress(RuntimeError):
                self._freed_at = asyncio.get_running_loop().time()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                if type(waiter) is QueuedWait:
                    waiter.admit(self._freed_at)
                else:
                    waiter.set_result(True)
                self.passed += 1
                return True
        return False

    def release(self) -> None:
        """Free a slot: to the oldest waiter still waiting, else back to the free count (or nothing,
        when a slot was handed on early for it: :meth:`pass_on`)."""
        if self.passed:
            self.passed -= 1
            return
        if self._tick is not None:  # someone waits: a tick runs on the loop
            with contextlib.suppress(RuntimeError):  # a run closed outside its loop (shutdown)
                self._freed_at = asyncio.get_running_loop().time()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                if type(waiter) is QueuedWait:
                    waiter.admit(self._freed_at)
                else:
                    waiter.set_result(True)
                return
        self.free += 1

    def _stalled(self, now: float) -> float:
        """Seconds the worker did not run since waits began, counting a stall going on now."""
        late = now - self._tick_due
        return self._stalled_s + (late if late > _STALL_SLACK_S else 0.0)

    def _on_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = now - self._tick_due
        if late > _STALL_SLACK_S:
            self._stalled_s += late
        if any(not w.done() for w in self._waiters):
            self._tick_due = now + _TICK_S
            self._tick = loop.call_at(self._tick_due, self._on_tick, loop)
        else:
            self._tick = None
            self._freed_at = float("-inf")  # nobody waits: the next waiter starts afresh

    def _expire(
        self,
        loop: asyncio.AbstractEventLoop,
        waiter: asyncio.Future[bool],
        fetched_at: float,
        stalled_before: float,
        hops: int = 2,
    ) -> None:
        if waiter.done():
            return
        if hops:
            # Decide after the loop ran what was already ready: a run that ended before the deadline
            # frees its slot two callbacks later (its future, then its coroutine). After a stall of the
            # whole worker its timers fire first and would see no slot freed.
            loop.call_soon(self._expire, loop, waiter, fetched_at, stalled_before, hops - 1)
            return
        now = loop.time()
        ran_s = now - fetched_at - (self._stalled(now) - stalled_before)  # time the worker ran
        flowing = now - self._freed_at < self.deadline_s
        if ran_s < self.limit_s and (ran_s < self.deadline_s or flowing):
            # stalled, or queued behind flowing tasks (not held): look again a little later
            again = now + max(self.deadline_s - ran_s, self.deadline_s / 2)
            timer = loop.call_at(again, self._expire, loop, waiter, fetched_at, stalled_before)
            waiter.add_done_callback(lambda _f: timer.cancel())
            return
        waiter.set_result(False)


class NotStarted(BaseException):
    """Raised in a run whose call waited in the pool's queue past its start deadline and was withdrawn
    (:meth:`SlotGate.enqueue`): its delivery goes back to the queue. A ``BaseException``, so that
    nothing records it as the task's failure on its way to the worker."""


class CallQueue(Protocol):
    """A pool that queues calls itself (:meth:`SlotGate.enqueue`): the threads pool."""

    def withdraw(self, call: Any) -> bool:
        """Withdraw a queued call (True) unless a thread took it already (False)."""

    def taken(self, call: Any) -> bool:
        """A thread took the call."""


class QueuedWait:
    """A run waiting for a slot while its call waits in the pool's own queue (:meth:`SlotGate.enqueue`).

    It stands where a parked run's future stands in the gate's queue: :meth:`admit` is the slot handed
    to it; ``set_result(False)``, its deadline, withdraws the call from the pool unless a thread took
    it already.
    """

    __slots__ = (
        "admitted",
        "admitted_s",
        "call",
        "check_s",
        "deadline_s",
        "ended",
        "fetched_at",
        "pool",
        "stalled_before",
    )

    def __init__(self, fetched_at: float, deadline_s: float, stalled_before: float) -> None:
        #: it holds a slot (a release handed it one)
        self.admitted = False
        #: the loop's clock when it got its slot
        self.admitted_s = 0.0
        #: withdrawn at its deadline, or its run ended (nothing may hand it a slot any more)
        self.ended = False
        self.fetched_at = fetched_at
        #: its start deadline (the loop's clock), and when it is looked at next (later while it waits
        #: behind flowing tasks)
        self.deadline_s = self.check_s = deadline_s
        #: the gate's stalled seconds when it began to wait
        self.stalled_before = stalled_before
        #: the pool that queued its call, and the call (:meth:`attach`)
        self.pool: CallQueue | None = None
        self.call: Any = None

    def attach(self, pool: CallQueue, call: Any) -> None:
        """The pool queued the run's call."""
        self.pool, self.call = pool, call

    def started(self) -> bool:
        """A thread took the call."""
        return self.pool is not None and self.pool.taken(self.call)

    def done(self) -> bool:
        return self.admitted or self.ended

    def admit(self, now_s: float) -> None:
        """A release handed it a slot at ``now_s`` (the loop's clock)."""
        self.admitted = True
        self.admitted_s = now_s

    def set_result(self, admitted: bool) -> None:
        """``True``: :meth:`admit` now; ``False``: the deadline passed: withdraw the call unless a
        thread took it (then it runs, and its slot comes with the next release)."""
        if admitted:
            self.admit(asyncio.get_running_loop().time())
        elif self.pool is None or self.pool.withdraw(self.call):
            self.ended = True

    def end(self) -> None:
        """Its run ended without a slot: releases hand it nothing from now on."""
        if not self.admitted:
            self.ended = True


_Waiter: TypeAlias = asyncio.Future[bool] | QueuedWait
