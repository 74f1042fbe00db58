"""Execution pools: where a task's code runs. Pools run code only; the worker's loop owns Redis I/O.

* ``asyncio``: coroutine tasks run on the worker's event loop; sync tasks run in a bounded set of
  threads (at most 32), with their context (``self.request``) carried over.
* ``threads``: as ``asyncio``, with one thread per execution slot, for blocking sync code.
* ``processes`` (``process/``): sync tasks run in child processes, for CPU-bound code.
* ``gevent`` (``greenlets.py``, optional): sync tasks run in greenlets, hundreds of them, for
  blocking I/O code that cannot be made async.

Why not ``loop.run_in_executor``: it costs a future chain and a loop wake-up per call. Here threads
take calls from a queue, and finished calls are handed back in batches: while a hand-back is pending
on the loop, further completions join it instead of waking the loop again. A prefetching worker's
runs that wait for a slot hand their calls to that queue too (``queues_calls``, ``prefetch.py``): a
thread that finishes a call takes the next one at once, and a call that no thread took by its start
deadline is withdrawn (never run; its delivery goes back). A sync run that nobody needs to await
(the worker's ``_start_call``) is handed over with ``submit``: no coroutine and no future wait for
it, and the hand-back calls its ``then`` on the loop. Threads are daemons, so a
task stuck in a thread cannot keep the process alive after a cold shutdown has handed it back.

Time limits of sync functions in threads (see ``limits.py``): the soft limit raises
``SoftTimeLimitExceeded`` in the thread at its next bytecode; the hard limit cannot stop a thread, so
the run fails with ``TimeLimitExceeded`` at once and its thread is *abandoned*: it no longer counts
as one of the pool's threads (a new one is started when needed) and it ends when the function
returns. ``abandoned`` counts them (heartbeat field ``abandoned``).

The map at the end is the only place pools are named (no dotted-string lookups).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..exceptions import ConfigurationError, SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded
from .limits import NO_LIMITS, TimeLimits, clear_thread_exception, raise_in_thread
from .offload import CompletionBatch, OffloadingPool, Then
from .recycling import NO_RECYCLING, Recycling
from .slotgate import NotStarted, QueuedWait

if TYPE_CHECKING:
    from ..app import Celeriac
    from .executor import Job

logger = logging.getLogger(__name__)

_STOP = object()


class Pool(Protocol):
    """What the worker needs from a pool."""

    name: str
    #: True when the pool recycles its own children; otherwise the worker recycles itself
    recycles_children: bool

    def prepare(self) -> None:
        """Set-up that must happen before the event loop and any thread exist (may fork)."""

    async def start(self) -> None:
        """Start on the worker's loop, before the first task."""

    async def run(self, job: Job, limits: TimeLimits) -> Any:
        """Run one task under ``limits``; return its function's value or raise its exception (or
        ``TimeLimitExceeded`` / ``WorkerLostError`` when the pool ended the run). The executor
        (``Executor.run``) decides what that means."""

    def resize(self, concurrency: int) -> None:
        """Follow a new concurrency (autoscale)."""

    async def close(self, cold: bool) -> None:
        """Stop (after the running tasks finished or were handed back)."""

    @property
    def busy_threads(self) -> int:
        """Threads still running task code (abandoned or interrupted ones, at exit)."""

    def info(self) -> dict[str, str]:
        """Extra heartbeat fields."""


class _Call:
    """One sync function handed to a thread."""

    __slots__ = (
        "abandoned",
        "fn",
        "future",
        "injected",
        "label",
        "limited",
        "limits",
        "running",
        "then",
        "thread_id",
        "withdrawn",
    )

    def __init__(self, fn: Callable[[], Any], future: asyncio.Future[Any], limits: TimeLimits, label: str):
        self.fn = fn
        self.future = future
        self.limits = limits
        self.limited = bool(limits)
        self.label = label
        self.running = False  # in the function now (a soft limit may be raised into its thread)
        self.injected = False  # the soft limit was raised into the thread (once at most)
        self.abandoned = False  # the hard limit passed: nobody waits for this call any more
        self.thread_id = 0  # the thread that took it (0: still queued)
        self.withdrawn = False  # its start deadline passed before a thread took it: never run it
        #: nobody awaits ``future``: its value or exception goes to ``then`` (ThreadBackedPool.submit)
        self.then: Then | None = None

    def fail(self, exc: BaseException) -> None:
        """End the call with ``exc`` on the loop (a terminate, a hard limit) while its thread goes on."""
        if self.future.done():
            return
        if self.then is not None:
            self.then(None, exc)
        else:
            self.future.set_exception(exc)


class ThreadBackedPool(OffloadingPool):
    """Coroutines on the loop; sync callables in daemon threads, started on demand: one per
    execution slot (``concurrency``)."""

    name = "threads"
    recycles_children = False
    #: calls beyond the free threads wait in the pool's queue, where a thread that finishes a call
    #: takes the next one at once: a prefetching worker hands its waiting runs' calls over
    #: (``SlotGate.enqueue``) instead of parking each run on the loop until a slot frees
    queues_calls = True

    def __init__(self, concurrency: int) -> None:
        self.threads = max(1, self._threads_for(concurrency))
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0  # threads serving the pool (abandoned ones are not counted)
        self._idle = 0  # threads waiting for a call
        self._queued = 0  # items put and not yet taken
        self._busy = 0  # threads inside a function (abandoned ones included)
        self._abandoned = 0
        self._batch = CompletionBatch(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_task: dict[str, _Call] = {}  # running and queued calls by task id (terminate)

    # ---- Pool ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        pass

    async def start(self) -> None:
        self._loop = self._batch.loop = asyncio.get_running_loop()

    def resize(self, concurrency: int) -> None:
        self.threads = max(1, self._threads_for(concurrency))
        with self._lock:
            # only idle threads take a stop: each one put here is taken by one of them at once
            surplus = min(self._started - self.threads, self._idle - self._queued)
            for _ in range(max(0, surplus)):
                self._started -= 1
                self._queued += 1
                self._calls.put(_STOP)

    @staticmethod
    def _threads_for(concurrency: int) -> int:
        """Threads for ``concurrency`` execution slots."""
        return concurrency

    async def close(self, cold: bool) -> None:
        """Stop idle threads. Busy ones (cold shutdown) finish on their own or die with the process."""
        for _ in range(self._started):
            self._calls.put(_STOP)

    @property
    def busy_threads(self) -> int:
        return self._busy

    @property
    def abandoned(self) -> int:
        """Threads still running a function whose hard time limit passed."""
        return self._abandoned

    def info(self) -> dict[str, str]:
        return {"threads": str(self._started), "abandoned": str(self._abandoned)}

    def terminate(self, task_id: str, signal_name: str) -> bool:
        """Revoke with terminate of a sync task: a thread cannot be killed. TaskRevokedError is raised
        in its thread at the thread's next Python bytecode, and the run ends at once with it (REVOKED,
        slot freed). A thread blocked in a C call (a long sleep, a socket read) goes on until that call
        returns; it is abandoned meanwhile (heartbeat ``abandoned``), like a thread past its hard time
        limit. The signal does not apply. Coroutines are not here: the worker cancels them."""
        call = self._by_task.get(task_id)
        if call is None:
            return False
        with self._lock:
            if call.abandoned or call.future.done():
                return True
            spawn = False
            if call.running:
                call.limited = True  # the thread clears a pending exception when the function returns
                call.injected = raise_in_thread(call.thread_id, TaskRevokedError) or call.injected
                call.abandoned = True
                self._started -= 1
                self._abandoned += 1
                spawn = self._spawn_locked()  # calls may be queued for the thread it replaces
        if spawn:
            self._spawn()
        call.fail(TaskRevokedError(f"task {task_id} terminated (revoked)"))
        return True

    # ---- sync calls ------------------------------------------------------------------------------
    async def run_sync(
        self,
        fn: Callable[[], Any],
        limits: TimeLimits = NO_LIMITS,
        label: str = "task",
        key: str = "",
        admission: QueuedWait | None = None,
    ) -> Any:
        """Run ``fn`` in a thread and return its result (or raise its exception). With ``admission``
        (a prefetched run waiting for a slot) the call may be withdrawn at its start deadline before a
        thread took it: :class:`~celeriac.worker.slotgate.NotStarted` is raised then."""
        loop = asyncio.get_running_loop()
        self._loop = self._batch.loop = loop
        future: asyncio.Future[Any] = loop.create_future()
        call = _Call(fn, future, limits, label)
        if admission is not None:
            if admission.ended:  # its deadline passed before the call was made
                raise NotStarted
            admission.attach(self, call)
        if key:
            self._by_task[key] = call
        self._put(call)
        try:
            return await future
        finally:
            if key:
                self._by_task.pop(key, None)

    run_queued = run_sync

    def submit(
        self,
        fn: Callable[[], Any],
        done: asyncio.Future[None],
        then: Then,
        limits: TimeLimits = NO_LIMITS,
        label: str = "task",
        key: str = "",
    ) -> None:
        """Run ``fn`` in a thread with nobody awaiting it (the worker's sync tasks,
        ``Executor.start_call``): ``then(value, error)`` is called on the loop once it returned or
        raised, or once a terminate or its hard limit ended it (``TaskRevokedError``,
        ``TimeLimitExceeded``), in the same batched hand-back as :meth:`run_sync`'s results. ``then``
        must complete ``done``; a ``done`` completed or cancelled before that (a shutdown) means
        nobody wants the call any more: it is not started if still queued, and ``then`` is not called.

        What :meth:`run_sync` does without its coroutine and future: one asyncio Task, one future and
        two turns of the loop less per call."""
        loop = asyncio.get_running_loop()
        self._loop = self._batch.loop = loop
        call = _Call(fn, done, limits, label)
        if key:
            self._by_task[key] = call  # a revoke with terminate finds it until it is handed back
            call.then = functools.partial(self._forget, key, then)
        else:
            call.then = then
        self._put(call)

    def _put(self, call: _Call) -> None:
        """Queue ``call`` for the threads, starting one more if none is free and the pool may grow."""
        with self._lock:
            self._queued += 1
            spawn = self._spawn_locked()
        self._calls.put(call)
        if spawn:
            self._spawn()

    def _forget(self, key: str, then: Then, value: Any, error: BaseException | None) -> None:
        """A submitted call's hand-back: the task is no longer this pool's to terminate."""
        self._by_task.pop(key, None)
        then(value, error)

    def _spawn_locked(self) -> bool:
        """Under the lock: must a thread start (a call queued with no idle thread for it)? Counted."""
        spawn = self._queued > self._idle and self._started < self.threads
        if spawn:
            self._started += 1
        return spawn

    def _spawn(self) -> None:
        name = f"celeriac-{self.name}-{self._started}"
        threading.Thread(target=self._thread, name=name, daemon=True).start()

    def withdraw(self, call: _Call) -> bool:
        """On the loop, at a queued call's start deadline: withdraw it (True) unless a thread took it
        (False). A withdrawn call is never run; its run gets :class:`NotStarted`."""
        with self._lock:
            if call.thread_id:
                return False
            call.withdrawn = True
        if not call.future.done():
            call.future.set_exception(NotStarted())
        return True

    @staticmethod
    def taken(call: _Call) -> bool:
        """A thread took the call (read on the loop without the lock: :meth:`withdraw` decides)."""
        return call.thread_id != 0

    def _thread(self) -> None:
        # Two sections under the pool's lock per call in this thread (there were five): one when the
        # call is taken (the counts, and the call marked running), one when it is done (the counts,
        # this thread idle again, and the result put in the batch the loop collects); a call with
        # time limits takes one more in _invoke. The thread counts itself idle from the moment it is
        # done with a call: it is on its way to wait for the next one and runs nothing meanwhile.
        lock, calls, batch = self._lock, self._calls, self._batch
        ident = threading.get_ident()
        with lock:
            self._idle += 1
        while True:
            call = calls.get()
            with lock:
                self._idle -= 1
                self._queued -= 1
                if call is _STOP:
                    return
                # cancelled, revoked or withdrawn before a thread took it: never run it
                skip = call.withdrawn or call.future.done()
                if skip:
                    self._idle += 1
                else:
                    call.running = True
                    call.thread_id = ident
                    self._busy += 1
            if skip:
                continue
            try:
                if call.limited:
                    value, error = self._invoke(call)
                else:  # _invoke without limits, inlined: this runs for every call
                    try:
                        value, error = call.fn(), None
                    except BaseException as exc:  # handed to the awaiting coroutine, which decides
                        value, error = None, exc
                    if call.limited:  # a terminate raised into this thread meanwhile (terminate)
                        self._stop_raising(call)
            except (SoftTimeLimitExceeded, TaskRevokedError) as stray:
                # The soft limit landed after the function returned, before _invoke withdrew it (it
                # is raised at most once per call, so nothing else can be pending now).
                value, error = None, stray
            with lock:
                call.running = False
                self._busy -= 1
                if call.abandoned:  # the hard limit passed: this thread was replaced; it ends here
                    self._abandoned -= 1
                    return
                self._idle += 1
                wake = batch.add_locked(call.future, value, error, call.then)
            if wake and not batch.wake():
                with lock:
                    self._idle -= 1
                return  # the loop is closed: the worker is gone

    def _invoke(self, call: _Call) -> tuple[Any, BaseException | None]:
        """Call the function (its thread marked running by the caller, under the lock)."""
        if call.limited:
            assert self._loop is not None
            # limits count from the start of the run (a call may have waited for a free thread)
            self._loop.call_soon_threadsafe(self._arm, call, time.monotonic())
        try:
            return call.fn(), None
        except BaseException as exc:  # handed to the awaiting coroutine, which decides
            return None, exc
        finally:
            if call.limited:
                self._stop_raising(call)

    def _stop_raising(self, call: _Call) -> None:
        """The function returned: the loop may raise into this thread no more, and an exception it
        raised that is still pending is cleared."""
        with self._lock:
            call.running = False  # first: from here on the loop cannot raise into us
            if call.injected:
                clear_thread_exception(call.thread_id)

    # ---- time limits (on the loop) ---------------------------------------------------------------
    def _arm(self, call: _Call, started: float) -> None:
        if call.future.done():
            return
        assert self._loop is not None
        offset = self._loop.time() - time.monotonic()  # the loop's clock is monotonic; be exact anyway
        soft, hard = call.limits.soft_s, call.limits.hard_s
        handles: list[asyncio.TimerHandle] = []
        if soft is not None:
            handles.append(self._loop.call_at(started + offset + soft, self._soft_limit, call))
        if hard is not None:
            handles.append(self._loop.call_at(started + offset + hard, self._hard_limit, call))
        call.future.add_done_callback(lambda _f: _cancel_all(handles))

    def _soft_limit(self, call: _Call) -> None:
        with self._lock:
            if not call.running or call.injected or call.abandoned:
                return
            call.injected = raise_in_thread(call.thread_id, SoftTimeLimitExceeded)
        if call.injected:
            logger.warning(
                "%s: soft time limit (%gs) exceeded; raised in its thread", call.label, call.limits.soft_s
            )

    def _hard_limit(self, call: _Call) -> None:
        with self._lock:
            if not call.running or call.abandoned:
                return
            call.abandoned = True
            self._started -= 1  # the thread no longer serves the pool: a new one starts if needed
            self._abandoned += 1
            spawn = self._spawn_locked()  # calls may be queued for the thread it replaces
        if spawn:
            self._spawn()
        logger.warning(
            "%s: time limit (%gs) exceeded; failing it. Its thread cannot be stopped and is abandoned "
            "(%d abandoned thread(s) still running)",
            call.label,
            call.limits.hard_s,
            self._abandoned,
        )
        call.fail(TimeLimitExceeded(f"{call.label}: time limit ({call.limits.hard_s:g}s) exceeded"))


def _cancel_all(handles: list[asyncio.TimerHandle]) -> None:
    for handle in handles:
        handle.cancel()


class AsyncioPool(ThreadBackedPool):
    """Coroutines on the loop; sync tasks in a bounded set of threads."""

    name = "asyncio"

    @staticmethod
    def _threads_for(concurrency: int) -> int:
        return min(concurrency, MAX_ASYNCIO_THREADS)


MAX_ASYNCIO_THREADS = 32
POOLS = ("asyncio", "threads", "processes", "gevent")
DEFAULT_CONCURRENCY = {"asyncio": 100, "threads": 10, "processes": os.cpu_count() or 1, "gevent": 100}


def make_pool(kind: str, concurrency: int, app: Celeriac, recycling: Recycling = NO_RECYCLING) -> Pool:
    """A pool by name: ``asyncio``, ``threads``, ``processes`` or ``gevent``.

    Raises:
        ConfigurationError: ``gevent`` without gevent installed.
    """
    if kind == "asyncio":
        return AsyncioPool(concurrency)
    if kind == "threads":
        return ThreadBackedPool(concurrency)
    if kind == "processes":
        from .process.pool import ProcessPool  # not imported by workers of the other pools

        return ProcessPool(app, concurrency, recycling)
    if kind == "gevent":
        try:
            from .greenlets import GeventPool  # gevent is an optional extra
        except ImportError as exc:
            if exc.name not in ("gevent", "greenlet"):
                raise
            from ..gevent_patch import INSTALL_HINT

            raise ConfigurationError("pool", INSTALL_HINT) from None
        return GeventPool(concurrency)
    raise ConfigurationError("pool", f"unknown pool {kind!r}: choose one of {', '.join(POOLS)}")
