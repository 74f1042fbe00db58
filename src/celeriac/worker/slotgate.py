"""Admission to the pool: a semaphore of ``concurrency`` slots whose waits end at a start deadline.

The worker's prefetch (:mod:`celeriac.worker.prefetch`) admits runs to the pool through a
:class:`SlotGate` of ``concurrency``: a slot holds it while its task runs; prefetched runs wait for it
(that wait is what the deadline bounds).
A pool that learns of a task's end before the worker's run does (the processes pool: the child's
answer) hands the slot on at once (:meth:`SlotGate.pass_on`): the next prefetched run reaches the
freed child without waiting for the finished run's outcome to be recorded and settled.

The processes pool sends a waiting run's request ahead to one busy child (``process/pool.py``): its
wait is *named* (:attr:`QueuedWait.named`): a release in order passes it by, and the pool admits it
when that child answers (:meth:`SlotGate.pass_to`), whichever child frees first.

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
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

__all__ = ["START_DEADLINE_S", "START_LIMIT_S", "CallQueue", "NotStarted", "QueuedWait", "SlotGate"]

#: a fetched message that has not started by then goes back to the queue, unless slots are still freeing
#: (tasks flow: it is queued, not held), and then by ``START_LIMIT_S`` at the latest
START_DEADLINE_S = 0.02
START_LIMIT_S = 0.1
#: while a run waits for a slot, the loop's lateness is measured every _TICK_S; lateness beyond
#: _STALL_SLACK_S is time the worker did not run (it does not count against the start deadline)
_TICK_S = 0.005
_STALL_SLACK_S = 0.002


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
        #: called when a release frees a slot that no waiter took (the processes pool then starts a
        #: run of its own queue on an idle child: its waits are named, see :meth:`pass_to`)
        self.on_free: Callable[[], object] | None = None

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
        if not self._waiters or not self._to_oldest_waiter():
            return False
        self.passed += 1
        return True

    def pass_to(self, waiter: QueuedWait, now_s: float) -> None:
        """:meth:`pass_on`, to a named wait (:attr:`QueuedWait.named`): the processes pool's child
        answered a run and has already taken ``waiter``'s call, sent ahead to it; or the pool started
        that call on the child the answered run freed. The answered run's release then frees nothing."""
        if self._tick is not None:  # slots are flowing: the waits behind it are queued, not held
            self._freed_at = now_s
        waiter.admit(now_s)
        self.passed += 1
        waiters = self._waiters  # named waits end nearly in order: drop the ended ones at the head
        while waiters and waiters[0].done():
            waiters.popleft()

    def release(self) -> None:
        """Free a slot: to the oldest waiter still waiting, else back to the free count (or nothing,
        when a slot was handed on early for it: :meth:`pass_on`)."""
        if self.passed:
            self.passed -= 1
            return
        if not self._to_oldest_waiter():
            self.free += 1
            if self.on_free is not None:
                self.on_free()

    def _to_oldest_waiter(self) -> bool:
        """Give a freed slot to the oldest waiter still waiting, named waits aside; whether one took it."""
        if self._tick is not None:  # someone waits: a tick runs on the loop
            with contextlib.suppress(RuntimeError):  # a run closed outside its loop (shutdown)
                self._freed_at = asyncio.get_running_loop().time()
        waiters = self._waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        for i, waiter in enumerate(waiters):
            if waiter.done():
                continue
            if type(waiter) is QueuedWait:
                if waiter.named:  # the pool admits it (pass_to): the child it went to decides when
                    continue
                waiter.admit(self._freed_at)
            else:
                waiter.set_result(True)
            del waiters[i]
            return True
        return False

    def _stalled(self, now: float) -> float:
        """Seconds the worker did not run since waits began, counting a stall going on now."""
        late = now - self._tick_due
        return self._stalled_s + (late if late > _STALL_SLACK_S else 0.0)

    def _on_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = now - self._tick_due
        if late > _STALL_SLACK_S:
            self._stalled_s += late
        waiters = self._waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        if waiters:
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
        "named",
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
        #: only the pool admits it (:meth:`SlotGate.pass_to`), never a release in order: the processes
        #: pool sends calls ahead to particular children, and which one frees first decides
        self.named = False

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
