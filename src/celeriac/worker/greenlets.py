"""The ``gevent`` pool: sync tasks in greenlets, for blocking I/O code that cannot be made async.

Hundreds of sync tasks that wait on sockets (``requests``, a blocking database driver, ``time.sleep``)
run in one process, one greenlet each, because gevent's monkey-patching turns their blocking calls
into switches to gevent's hub (``celeriac/gevent_patch.py`` patches before anything is imported).

The worker still owns all Redis I/O on its asyncio loop, unchanged. After ``patch_all()`` the
default selector is gevent's, so the loop *is* a greenlet (the main one) that waits in gevent's
hub: while it waits for Redis or a timer, the task greenlets run, and while they wait for their
sockets, the loop runs. A finished greenlet hands its result back with ``loop.call_soon`` and wakes
the loop by setting the ready event its (gevent) selector waits on: no system call; completions that
arrive while a hand-back is pending join it (one loop wake-up per batch, as in the thread pools).
Coroutine tasks run on the loop as in the other pools. asyncio's notion of the running loop is kept
per greenlet (a greenlet trace function), so a sync task may still call ``asyncio.run``.

Why not the loop in a real OS thread next to the hub: asyncio, redis-py and the default executor
then run on patched primitives (gevent locks, greenlet "threads") from a thread that is not the
hub's, which gevent supports only partly. One thread, one hub, one loop is the simple sound design.

The cost of that design, and the trade-off of gevent itself: greenlets are cooperative. Code that
does not yield (CPU-bound loops, C extensions that block without releasing to gevent: a database
driver written in C that gevent cannot patch) stops every other greenlet *and the worker's loop*:
no fetch, no settle, no lease renewal. A lease that is not renewed expires after ``lease_s`` and the
task may run again elsewhere. CPU-bound tasks belong in ``-P processes``. A watchdog greenlet logs a
warning when the hub was blocked for a second or more, so this does not go unnoticed.

Time limits: the soft limit is a ``gevent.Timeout`` around the call, so ``SoftTimeLimitExceeded`` is
raised inside the greenlet where it waits (``time.sleep``, a socket read). The hard limit kills the
greenlet (``GreenletExit`` at its next switch, so ``finally`` blocks run) and fails the run with
``TimeLimitExceeded`` at once; a greenlet that swallows the kill keeps running, *abandoned*, until
it returns (heartbeat field ``abandoned``). A cold shutdown kills the greenlets of the tasks it hands
back. Neither limit can interrupt code that never yields (see above): such a task runs to its end,
and so do the others meanwhile, since no timer can fire. The hard limit still holds for the outcome:
a run that ends past it (by its own CPU time or another task's) fails with ``TimeLimitExceeded``,
whatever it returned. The worker says so at start-up when sync tasks have limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

import gevent
import greenlet

from ..exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from ..gevent_patch import check_patched
from .limits import NO_LIMITS, TimeLimits
from .offload import Completion, OffloadingPool, resolve

logger = logging.getLogger(__name__)

_UNSET = object()
_WATCH_INTERVAL_S = 0.5
_BLOCKED_WARNING_S = 1.0  # a tenth of the default lease


class _Run:
    """One sync call in a greenlet."""

    __slots__ = ("abandoned", "deadline", "future", "greenlet", "label", "limits", "started")

    def __init__(self, future: asyncio.Future[Any], limits: TimeLimits, label: str) -> None:
        self.future = future
        self.limits = limits
        self.label = label
        self.greenlet: gevent.Greenlet | None = None
        self.abandoned = False  # the hard limit passed, or its delivery was handed back
        self.started = time.monotonic()
        #: when the hard limit passes (monotonic), or None
        self.deadline = self.started + limits.hard_s if limits.hard_s is not None else None


class _Completions:
    """Finished greenlets handed back to the loop in batches, the loop woken without a system call.

    As :class:`~celeriac.worker.offload.CompletionBatch` (one hand-back per batch), but a greenlet
    runs in the loop's own thread, so the hand-back is a plain ``call_soon``, and the loop, waiting in
    gevent's selector (a greenlet waiting on the selector's ready event), is woken by setting that
    event: no write to the loop's self-pipe and no read of it, which cost the worker more per task
    than the rest of the hand-back. Without that event (another gevent), the self-pipe as before.
    """

    __slots__ = ("_done", "_pending", "_wake", "loop")

    def __init__(self) -> None:
        self._done: list[Completion] = []
        self._pending = False
        self._wake: Callable[[], None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        ready = getattr(getattr(loop, "_selector", None), "_ready", None)  # gevent's GeventSelector
        self._wake = getattr(ready, "set", None)

    def add(self, future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
        """Hand a result (or ``error``) back to ``future``'s awaiter on the loop."""
        self._done.append((future, value, error, None))
        if self._pending:
            return
        self._pending = True
        loop = self.loop
        assert loop is not None
        wake = self._wake
        try:
            if wake is None:
                loop.call_soon_threadsafe(self._hand_back)
            else:
                loop.call_soon(self._hand_back)
                wake()  # the loop's select returns (at once if it is not waiting now)
        except RuntimeError:  # the loop is closed: the worker is gone, nobody awaits this
            pass

    def _hand_back(self) -> None:
        done, self._done = self._done, []
        self._pending = False
        resolve(done)


class GeventPool(OffloadingPool):
    """Coroutines on the loop; sync callables in one greenlet each (see the module docstring).

    A greenlet that finished a call waits (parked on the hub) for the next one, as a thread of a
    thread pool does: starting a greenlet per task cost more than the rest of its hand-off (a
    ``Greenlet`` object, and a new Python frame stack for it, mapped and unmapped each time). So, as
    with threads, greenlet-local state (``gevent.local``) outlives a task. A greenlet whose call was
    killed (hard limit, terminate, shutdown) ends instead of serving another: the kill may reach it
    late. There are as many greenlets as calls ever ran at once: at most the worker's concurrency, so
    neither the concurrency given nor resizing (autoscale) needs anything here.
    """

    name = "gevent"
    recycles_children = False

    def __init__(self, concurrency: int = 0) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[_Run] = set()
        # no lock: greenlets and the loop share one OS thread, and nothing in a hand-back switches
        self._batch = _Completions()
        self._previous_trace: Any = _UNSET
        self._watchdog: gevent.Greenlet | None = None
        self.abandoned = 0
        #: greenlets parked between calls, the most recently parked last (its stack is warm)
        self._idle: list[gevent.Greenlet] = []

    # ---- Pool ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        check_patched()

    async def start(self) -> None:
        check_patched()
        self._loop = asyncio.get_running_loop()
        self._batch.attach(self._loop)
        self._running_loop_per_greenlet()
        self._watchdog = gevent.spawn(self._watch_hub)
        selector = getattr(self._loop, "_selector", None)
        if selector is not None and not type(selector).__module__.startswith("gevent"):
            # a loop made before the patch blocks the whole process in its select: no greenlet runs
            from ..exceptions import ConfigurationError

            raise ConfigurationError(
                "pool",
                "the gevent pool needs an event loop created after gevent's monkey-patching "
                f"(this loop's selector is {type(selector).__name__})",
            )

    def resize(self, concurrency: int) -> None:
        pass  # one greenlet per running task: the worker's slot count is the only bound

    async def close(self, cold: bool) -> None:
        """Kill greenlets still running (their deliveries were handed back), and the parked ones."""
        for run in list(self._running):
            self._kill(run)
        idle, self._idle = self._idle, []
        for glet in idle:
            glet.kill(block=False)
        if self._previous_trace is not _UNSET:
            greenlet.settrace(self._previous_trace)
            self._previous_trace = _UNSET
        if self._watchdog is not None:
            self._watchdog.kill(block=False)
            self._watchdog = None

    def _watch_hub(self) -> None:
        """Say when something kept every greenlet (and the worker's loop) from running.

        A greenlet that sleeps for a fixed interval and wakes up late measures how long the hub was
        blocked: by CPU-bound code or a blocking call gevent could not patch. Meanwhile leases were
        not renewed; past ``lease_s`` the task may run again elsewhere. Said at most once a minute.
        """
        last_warning = float("-inf")
        while True:
            started = time.monotonic()
            gevent.sleep(_WATCH_INTERVAL_S)
            late = time.monotonic() - started - _WATCH_INTERVAL_S
            if late >= _BLOCKED_WARNING_S and started - last_warning >= 60.0:
                last_warning = started
                logger.warning(
                    "gevent: no greenlet could run for %.1fs (a task computing or blocking without "
                    "yielding: CPU-bound code or a blocking call gevent cannot patch). Redis I/O and "
                    "lease renewal waited too; use -P processes for such tasks",
                    late,
                )

    def _running_loop_per_greenlet(self) -> None:
        """Make asyncio's "running loop" a property of each greenlet rather than of the OS thread.

        asyncio records the running loop per OS thread, and the worker's loop runs in this thread's
        main greenlet: without this, a sync task calling ``asyncio.run()`` (as it may in a thread)
        would be told that a loop already runs. A greenlet trace function saves the running loop of
        the greenlet switched away from and restores that of the greenlet switched to (None for a
        new one), so each sees its own, including a loop a task runs itself.
        """
        saved: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        get_loop, set_loop = asyncio._get_running_loop, asyncio._set_running_loop
        previous = greenlet.gettrace()

        def trace(event: str, args: Any) -> None:
            if event == "switch" or event == "throw":
                origin, target = args
                current = saved[origin] = get_loop()
                wanted = saved.get(target)
                if wanted is not current:  # mostly None to None (the hub and task greenlets): skip it
                    set_loop(wanted)  # (each call reads the pid: a system call on Python 3.11)
            if previous is not None:
                previous(event, args)

        self._previous_trace = previous
        greenlet.settrace(trace)

    @property
    def busy_threads(self) -> int:
        return len(self._running)

    def info(self) -> dict[str, str]:
        return {"greenlets": str(len(self._running)), "abandoned": str(self.abandoned)}

    # ---- sync calls ------------------------------------------------------------------------------
    async def run_sync(
        self, fn: Callable[[], Any], limits: TimeLimits = NO_LIMITS, label: str = "task", key: str = ""
    ) -> Any:
        """Run ``fn`` in a greenlet under ``limits``; return its value or raise its exception.
        (A revoke with terminate cancels the awaiting coroutine, which kills the greenlet.)"""
        loop = asyncio.get_running_loop()
        if self._batch.loop is not loop:
            self._loop = loop
            self._batch.attach(loop)
        run = _Run(loop.create_future(), limits, label)
        self._running.add(run)
        self._dispatch(run, fn)
        hard = None
        if limits.hard_s is not None:
            hard = loop.call_later(limits.hard_s, self._hard_limit, run)
        try:
            return await run.future
        except asyncio.CancelledError:
            self._kill(run)  # handed back (cold shutdown, or the grace ran out): it must not go on here
            raise
        finally:
            if hard is not None:
                hard.cancel()

    def _dispatch(self, run: _Run, fn: Callable[[], Any]) -> None:
        """Hand the call to a parked greenlet (resumed by the hub, as gevent's own waiters are), or
        to a new one."""
        idle = self._idle
        while idle:
            glet = idle.pop()
            if not glet.dead:  # (a parked greenlet is never killed but at close; be safe all the same)
                run.greenlet = glet
                glet.parent.loop.run_callback(glet.switch, run, fn)
                return
        run.greenlet = gevent.spawn(self._serve, run, fn)

    def _serve(self, run: _Run, fn: Callable[[], Any]) -> None:
        """A greenlet's life: run calls, parked on the hub in between, until one of them is killed."""
        me = gevent.getcurrent()
        hub = gevent.get_hub()
        while True:
            if run.abandoned:  # killed before it started: it must not run
                self._running.discard(run)
                self.abandoned -= 1
                return
            self._invoke(run, fn)
            if run.abandoned:  # its kill may still be on its way to this greenlet: end here
                return
            self._idle.append(me)
            run, fn = hub.switch()  # parked until _dispatch hands it the next call

    def _invoke(self, run: _Run, fn: Callable[[], Any]) -> None:
        """Call ``fn`` (under the soft limit), then hand the outcome back."""
        value: Any = None
        error: BaseException | None = None
        try:
            soft_s = run.limits.soft_s
            if soft_s is None:
                value = fn()
            else:
                soft = SoftTimeLimitExceeded(f"{run.label}: soft time limit ({soft_s:g}s) exceeded")
                with gevent.Timeout(soft_s, soft):
                    value = fn()
        except BaseException as exc:  # handed to the awaiting coroutine, which decides (a kill too)
            error = exc
        self._complete(run, value, error)

    def _complete(self, run: _Run, value: Any, error: BaseException | None) -> None:
        # No lock: greenlets and the loop share one OS thread, and nothing here switches.
        self._running.discard(run)
        if run.abandoned:
            self.abandoned -= 1
            return
        if run.deadline is not None and time.monotonic() >= run.deadline:
            # It ran past its hard limit without the hub getting a chance to kill it (it, or another
            # task, computed without yielding): the limit still holds for the outcome.
            value, error = (
                None,
                TimeLimitExceeded(
                    f"{run.label}: time limit ({run.limits.hard_s:g}s) exceeded; it ended after "
                    f"{time.monotonic() - run.started:.1f}s (gevent interrupts a task only where it yields)"
                ),
            )
        self._batch.add(run.future, value, error)

    # ---- ending greenlets ------------------------------------------------------------------------
    def _kill(self, run: _Run) -> None:
        """Throw ``GreenletExit`` into the greenlet at its next switch; it is abandoned until it ends."""
        if run.abandoned or run not in self._running:
            return
        run.abandoned = True
        self.abandoned += 1
        if run.greenlet is not None:
            run.greenlet.kill(block=False)
            # Let the hub deliver the kill now, before the caller records the outcome (REVOKED,
            # TimeLimitExceeded). Otherwise the kill waits for the hub's next turn, which a busy loop
            # may delay past the moment the task's socket becomes readable: the hub then resumes the
            # greenlet for that read first, and a "terminated" task goes on to its side effects.
            # The kill callback was queued first, so it runs before the hub switches back here.
            gevent.sleep(0)

    def _hard_limit(self, run: _Run) -> None:
        if run.future.done() or run not in self._running:
            return
        self._kill(run)
        logger.warning("%s: time limit (%gs) exceeded; its greenlet was killed", run.label, run.limits.hard_s)
        run.future.set_exception(
            TimeLimitExceeded(
                f"{run.label}: time limit ({run.limits.hard_s:g}s) exceeded; its greenlet was killed"
            )
        )
