"""The ``processes`` pool: sync tasks (CPU-bound code) run in child processes, one task per child.

The worker's event loop keeps all Redis I/O and every decision: a child receives the task's name,
arguments and request over a socket, and answers with the value or the exception; the worker's
executor turns that into an outcome, exactly as for the other pools. So the number of Redis
connections does not grow with the children, and a child needs no broker settings at all.

Requests go to a child's inbox (``ipc.py``: a ``SOCK_SEQPACKET`` pair, one record per request), whose
child end the worker keeps too. A prefetched run waiting for a slot (``SlotGate.enqueue``) is sent
ahead to a busy child, one per child: the child starts it the moment it answers its current task,
without waiting for the worker. At its start deadline the worker tries to read the record back (the
kernel hands a record to one reader): read back, it never runs and its delivery goes back; else the
child took it. When the child answers, that run gets the answered run's slot by name
(``SlotGate.pass_to``). Runs beyond one ahead per child wait in the pool's queue.

Children are forked by a fork server that holds the imported app (see ``forkserver.py`` for why).
The pool chooses it: a lean one (a fresh interpreter that imports only the app, ``lean.py``) when the
app can be imported again by name, else one forked from the worker. The pool reads every child
socket with ``loop.add_reader``: no thread per child.

What happens when:

* a child dies (segfault, OOM kill, ``os._exit``): a request sent ahead that it never read is
  still in its inbox: queued again for another child. Its socket reaches EOF; the run fails with
  :class:`~celeriac.exceptions.WorkerLostError`, which the executor turns into a hand-back (the task
  runs again, counting a delivery, so ``max_deliveries`` still stops a task that kills every child)
  or, for a task that opted out of redelivery (``acks_late=False``), a failure. A new child starts.
* the hard time limit passes: the child is killed (SIGKILL) and replaced; the run fails with
  :class:`~celeriac.exceptions.TimeLimitExceeded` and follows its retry policy. The soft limit is
  the child's business (SIGALRM, or cancellation for a coroutine).
* a recycling limit is reached (tasks, resident memory after a task, age): the child is told to stop
  after its task and a new one starts at once. Nothing is sent ahead to a child whose task count
  would pass the limit; one that reached its memory or age limit runs the task it took ahead first.
* cold shutdown: the worker hands the running tasks back and cancels their runs; the pool kills the
  children that were running them (a task handed back must not go on running here).

Async tasks run in the child too, each with ``asyncio.run``: one at a time per child, so a process
pool is not the place for I/O-bound coroutines (use ``-P asyncio``).

Why this module is long: the pool's life cycle (children, limits, terminate, reading answers) shares
one state (the children and their runs); the framing, the child loop and the fork servers are apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import operator
import os
import pickle
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...context import Request
from ...exceptions import SerializationError, TaskError, TaskRevokedError, TimeLimitExceeded, WorkerLostError
from ..executor import REMOTE_TRACEBACK_ATTR
from ..limits import TimeLimits
from ..recycling import NO_RECYCLING, Recycling
from ..slotgate import NotStarted
from . import ipc
from .child import child_main
from .forkserver import ForkServer, read_exits
from .ipc import Channel
from .lean import LeanSpec, LeanUnavailable, lean_spec, start_server

if TYPE_CHECKING:
    from ...app import Celeriac
    from ..executor import Job
    from ..slotgate import QueuedWait, SlotGate

logger = logging.getLogger(__name__)

_READY_TIMEOUT_S = 30.0
_STOP_WAIT_S = 5.0
_RESPAWN_DELAY_S = 1.0
_TERMINATE_GRACE_S = 1.0  # SIGTERM/SIGINT (ignored by children) become SIGKILL after this
_PROTOCOL = pickle.HIGHEST_PROTOCOL
#: a request travels as the tuple of its fields (the child rebuilds it): pickling the dataclass
#: itself costs both processes a few microseconds more per task
_request_fields = operator.attrgetter(*Request.__slots__)


class _Run:
    """One task sent to a child (or waiting in the pool's queue for one)."""

    __slots__ = (
        "child",
        "data",
        "future",
        "hard",
        "hard_s",
        "label",
        "runtime_s",
        "seq",
        "task_id",
        "terminated",
        "wait",
    )

    def __init__(self, seq: int, future: asyncio.Future[Any], label: str, task_id: str = "") -> None:
        self.seq = seq
        self.future = future
        self.label = label
        self.task_id = task_id
        self.terminated = ""  # the signal sent by a revoke with terminate=True
        self.runtime_s: float | None = None  # the task's run time in the child (its answer)
        self.data = b""  # the pickled request
        self.hard_s: float | None = None  # the hard time limit, counted from its start in the child
        self.hard: asyncio.TimerHandle | None = None
        #: the child it was sent to (its run, or the one sent ahead), None while in the pool's queue
        self.child: _Child | None = None
        #: a prefetched run's wait for a slot (``SlotGate.enqueue``), None for a run given a slot first
        self.wait: QueuedWait | None = None


class _Child:
    __slots__ = (
        "age_limit_s",
        "age_timer",
        "ahead",
        "conn",
        "ended",
        "inbox",
        "pid",
        "ready",
        "requests",
        "rss_kib",
        "run",
        "started",
        "stopping",
        "tasks",
    )

    def __init__(
        self,
        pid: int,
        conn: Channel,
        age_limit_s: float | None,
        ready: asyncio.Future[None],
        inbox: tuple[socket.socket, socket.socket],
    ):
        self.pid = pid
        self.conn = conn
        #: the child's inbox (ipc.py): the end requests are sent on, and the child's end, kept to claim
        #: a request sent ahead back before the child takes it
        self.requests, self.inbox = inbox
        #: the run sent ahead while this child runs ``run``: it starts it the moment it answers
        self.ahead: _Run | None = None
        self.started = time.monotonic()
        self.age_limit_s = age_limit_s
        self.age_timer: asyncio.TimerHandle | None = None
        self.ready = ready
        self.tasks = 0
        self.rss_kib: int | None = None
        self.run: _Run | None = None
        self.stopping = False  # told to stop, or killed: no new task, not counted as capacity
        self.ended = False


class ProcessPool:
    """Sync tasks in child processes (see the module docstring).

    Args:
        app: the app whose tasks the children run (the fork server holds it, imported).
        concurrency: number of children.
        recycling: when to replace a child.
    """

    name = "processes"
    recycles_children = True
    #: a prefetched run waiting for a slot hands its request over at once (``SlotGate.enqueue``): sent
    #: ahead to a busy child, or kept in the pool's queue until a child can take it
    queues_calls = True

    def __init__(self, app: Celeriac, concurrency: int, recycling: Recycling = NO_RECYCLING) -> None:
        self.app = app
        self.target = concurrency
        self.recycling = recycling
        self.lost = 0  # children that died running a task
        self.recycled = 0
        self._server: ForkServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._children: dict[int, _Child] = {}
        self._idle: deque[_Child] = deque()
        self._waiters: deque[asyncio.Future[_Child]] = deque()
        self._seq = itertools.count(1)
        self._closing = False
        self._expected_exits: dict[int, str] = {}  # pid -> why we ended it (not worth a warning)
        self._all_ended: asyncio.Event | None = None
        self._respawn: asyncio.TimerHandle | None = None
        self._lean: LeanSpec | LeanUnavailable | None = None  # decided on the first start
        #: children measure their resident size after each task only for --max-memory-per-child
        self._want_rss = recycling.max_memory_kib is not None
        #: called when a child answers, before its run learns of it: the worker's slot gate hands the
        #: slot on to a prefetched run at once (``SlotGate.pass_on``), so the freed child gets its
        #: next task without waiting for the finished run to record its outcome
        self.pass_on: Callable[[], object] | None = None
        #: the worker's slot gate (prefetching workers): the pool admits the runs it sends ahead to a
        #: child itself (``SlotGate.pass_to``), when that child answers its previous run
        self.gate: SlotGate | None = None
        #: prefetched runs waiting for a child to send them to (in the order they came)
        self._pending: deque[_Run] = deque()

    # ---- Pool ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Start the fork server now, while the worker is still single-threaded.

        A lean one (a fresh interpreter that imports only the app: ``lean.py``) when the app can be
        imported again by name; otherwise one forked from the worker.
        """
        if self._server is not None and self._server.alive:
            return
        if self._lean is None:
            try:
                self._lean = lean_spec(self.app)
            except LeanUnavailable as exc:
                self._lean = exc
                logger.info("process pool: the fork server is forked from the worker (%s)", exc.reason)
        if isinstance(self._lean, LeanSpec):
            try:
                self._server = start_server(self._lean)
                return
            except LeanUnavailable as exc:
                # tasks registered at run time are a normal case (the fallback only costs memory)
                logger.log(
                    logging.INFO if exc.expected else logging.WARNING,
                    "%s; forking the process pool's server from the worker instead",
                    exc.reason,
                )
        self._server = ForkServer.fork(functools.partial(child_main, self.app))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._all_ended = asyncio.Event()
        self.prepare()
        self._watch_server()
        self._fill()
        children = list(self._children.values())
        done, _ = await asyncio.wait([c.ready for c in children], timeout=_READY_TIMEOUT_S)
        if len(done) < len(children) or any(f.exception() for f in done):
            raise RuntimeError("the process pool's children did not start (see the log above)")
        logger.info("process pool: %d children ready (fork server pid %d)", len(children), self._server_pid)

    async def run(self, job: Job, limits: TimeLimits) -> Any:
        loop = self._running_loop()
        label = job.label
        run = _Run(next(self._seq), loop.create_future(), label, job.message.id)
        try:
            fields = _request_fields(job.request)
            run.data = pickle.dumps(("run", run.seq, fields, limits.soft_s, self._want_rss), _PROTOCOL)
        except Exception as exc:
            raise SerializationError(f"cannot send {label} to a child process: {exc}") from exc
        run.hard_s = limits.hard_s
        wait = job.admission
        if wait is None:  # it holds a slot: the first free child runs it
            child = await self._acquire()
            self._begin(child, run)
            self._fill_ahead(child)
        else:  # a prefetched run waiting for a slot (SlotGate.enqueue): ahead to a busy child, or queued
            if wait.ended:  # its deadline passed before its request was made
                raise NotStarted
            wait.named = True
            wait.attach(self, run)
            run.wait = wait
            self._place(run)
        try:
            return await run.future
        except asyncio.CancelledError:
            self._cancelled(run)
            raise
        finally:
            if run.hard is not None:
                run.hard.cancel()
            # the prefetch bound reads how long the task ran, not how long the worker took to notice:
            # on a busy machine that doubles a 5 ms task's time in its slot and stops prefetching
            job.ran_s = run.runtime_s

    # ---- requests: sent to a free child, sent ahead to a busy one, or queued --------------------------
    def _send(self, child: _Child, run: _Run) -> None:
        """Put ``run``'s request in ``child``'s inbox (a dead child: its EOF fails the run)."""
        run.child = child
        with contextlib.suppress(OSError):
            if ipc.fits(run.data):
                child.requests.send(ipc.record(run.seq, run.data))
            else:  # too large for a record: on the stream, announced by an empty record
                child.conn.send_bytes(run.data)
                child.requests.send(ipc.record(run.seq, b""))

    def _begin(self, child: _Child, run: _Run, sent: bool = False) -> None:
        """``run`` starts in ``child`` now (sent now, or taken from ``child.ahead``)."""
        child.run = run
        if not sent:
            self._send(child, run)
        if run.hard_s is not None:
            run.hard = self._running_loop().call_later(run.hard_s, self._hard_limit, child, run, run.hard_s)

    def _can_take_ahead(self, child: _Child) -> bool:
        """``child`` runs a task and may be sent the next one ahead: it has none ahead, is not stopping,
        and will not be recycled for its task count after the task it runs."""
        max_tasks = self.recycling.max_tasks
        return (
            child.run is not None
            and child.ahead is None
            and not child.stopping
            and not self._closing
            and (max_tasks is None or child.tasks + 1 < max_tasks)
        )

    def _place(self, run: _Run) -> None:
        """A prefetched run's request: ahead to a busy child that has none (it starts the moment that
        child answers), else into the pool's queue. Never to a free child: free children are for runs
        holding a slot (a release starts a queued run on one, :meth:`start_queued`)."""
        if ipc.fits(run.data):  # a larger one cannot be claimed back: queued for a free child
            for child in self._children.values():
                if self._can_take_ahead(child):
                    child.ahead = run
                    self._send(child, run)
                    return
        self._pending.append(run)

    def _fill_ahead(self, child: _Child) -> None:
        """``child`` just started its run: send it the oldest queued request ahead."""
        while self._pending and self._can_take_ahead(child):
            run = self._pending[0]
            if not ipc.fits(run.data):
                return  # it waits for a free child
            self._pending.popleft()
            child.ahead = run
            self._send(child, run)

    def start_queued(self) -> None:
        """A slot is free (a release found no waiter): start queued runs on free children."""
        gate = self.gate
        while self._pending and self._idle and gate is not None and gate.try_take():
            child = self._idle.popleft()
            if child.stopping:
                gate.release()
                continue
            run = self._pending.popleft()
            assert run.wait is not None
            run.wait.admit(self._running_loop().time())
            self._begin(child, run)
            self._fill_ahead(child)

    # CallQueue (slotgate.py): the gate's start deadline for runs sent ahead or queued
    def taken(self, run: _Run) -> bool:
        """The child ``run`` was sent to has taken it (it runs, or is about to)."""
        child = run.child
        if child is None:
            return False
        # sent ahead: taken once the inbox is empty (the only other record there can be is the child's
        # own run, sent a moment before and not taken yet: then this one is not taken either)
        return child.run is run or ipc.head_seq(child.inbox) is None

    def withdraw(self, run: _Run) -> bool:
        """At ``run``'s start deadline: take its request back unless its child took it (False; also
        while the child's own run is still ahead of it in the inbox: the gate looks again later). A
        withdrawn run never runs; its run gets :class:`NotStarted` (its delivery goes back)."""
        child = run.child
        if child is None:
            with contextlib.suppress(ValueError):
                self._pending.remove(run)
        elif child.run is run or not ipc.claim(child.inbox, run.seq):
            return False
        else:
            child.ahead = None
            run.child = None
        if not run.future.done():
            run.future.set_exception(NotStarted())
        return True

    def _cancelled(self, run: _Run) -> None:
        """``run`` was cancelled (cold shutdown, handed back): it must not go on running here."""
        child = run.child
        if child is None:
            with contextlib.suppress(ValueError):
                self._pending.remove(run)
        elif child.run is run:
            self._kill(child, f"{run.label} was handed back (shutdown)")
        elif child.ahead is run:
            if ipc.claim(child.inbox, run.seq):
                child.ahead = None
            else:  # taken, or behind a run that was just sent: the child must not run it
                self._kill(child, f"{run.label} was handed back (shutdown)")

    def resize(self, concurrency: int) -> None:
        self.target = max(1, concurrency)
        if self._loop is None:
            return
        while self._capacity() > self.target and self._idle:
            self._stop(self._idle.popleft(), "autoscale: fewer children needed")
        self._fill()

    async def close(self, cold: bool) -> None:
        self._closing = True
        for waiter in self._waiters:
            waiter.cancel()
        if self._respawn is not None:
            self._respawn.cancel()
        for child in list(self._children.values()):
            if child.run is not None:  # still running (cold, or the grace period ran out): handed back
                self._kill(child, "shutdown with its task handed back")
            else:
                self._stop(child, "shutdown")
        if self._children and self._all_ended is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._all_ended.wait(), _STOP_WAIT_S)
        for child in list(self._children.values()):
            self._kill(child, "did not stop in time")
            self._ended(child)
        self._stop_server()

    @property
    def busy_threads(self) -> int:
        return 0

    def info(self) -> dict[str, str]:
        return {"children": str(self._capacity()), "lost": str(self.lost), "recycled": str(self.recycled)}

    # ---- children --------------------------------------------------------------------------------
    @property
    def _server_pid(self) -> int:
        return self._server.pid if self._server is not None else 0

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "start() first"
        return self._loop

    def _capacity(self) -> int:
        return sum(1 for c in self._children.values() if not c.stopping)

    def _watch_server(self) -> None:
        assert self._server is not None and self._server.status is not None
        self._running_loop().add_reader(self._server.status.fileno(), self._on_exits, self._server)

    def _stop_server(self) -> None:
        if self._server is None:
            return
        if self._server.status is not None and self._loop is not None:
            self._loop.remove_reader(self._server.status.fileno())
        self._server.close()
        self._server = None

    def _fill(self) -> None:
        """Start children until ``target`` of them can take tasks."""
        while not self._closing and self._capacity() < self.target:
            if not self._spawn():
                return

    def _spawn(self) -> bool:
        loop = self._running_loop()
        try:
            if self._server is None or not self._server.alive:
                logger.warning("starting a new fork server for the process pool")
                self._stop_server()
                self.prepare()
                self._watch_server()
            assert self._server is not None
            pid, sock = self._server.spawn()
            inbox = ipc.inbox_pair()
            try:
                socket.send_fds(sock, [b"i"], [inbox[1].fileno()])
            except OSError:
                inbox[0].close()
                inbox[1].close()
                sock.close()  # the child reads EOF instead of its inbox, and exits
                raise
        except OSError as exc:
            logger.error("cannot start a child process (%s); retrying in %.0fs", exc, _RESPAWN_DELAY_S)
            if self._respawn is None or self._respawn.cancelled():
                self._respawn = loop.call_later(_RESPAWN_DELAY_S, self._fill)
            return False
        child = _Child(pid, Channel(sock), self.recycling.age_limit_s(), loop.create_future(), inbox)
        self._children[pid] = child
        assert self._all_ended is not None
        self._all_ended.clear()
        loop.add_reader(child.conn.fileno(), self._on_readable, child)
        if child.age_limit_s is not None:
            child.age_timer = loop.call_later(child.age_limit_s, self._age_check, child)
        return True

    async def _acquire(self) -> _Child:
        while self._idle:
            child = self._idle.popleft()
            if not child.stopping:
                return child
        waiter: asyncio.Future[_Child] = self._running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # it was handed a child just as it was cancelled
            raise

    def _release(self, child: _Child) -> None:
        """The child is free: recycle it, or give it to a waiting run, or keep it idle."""
        if child.stopping:
            return
        if self._closing:
            self._stop(child, "shutdown")
            return
        if self._retire(child):
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(child)
                return
        self._idle.append(child)
        if self._pending:  # a new child, or a slot freed before this child did
            self.start_queued()

    def _age_check(self, child: _Child) -> None:
        if child.run is None and child in self._idle:  # busy children are checked when they finish
            self._idle.remove(child)
            self._release(child)

    def _stop(self, child: _Child, why: str) -> None:
        """Ask a free child to exit (it ends its loop; EOF follows)."""
        if child.stopping:
            return
        logger.log(logging.DEBUG if self._closing else logging.INFO, "stopping child %d: %s", child.pid, why)
        child.stopping = True
        self._expected_exits[child.pid] = why
        with contextlib.suppress(ValueError):
            self._idle.remove(child)
        try:
            child.requests.send(ipc.record(0, pickle.dumps(("stop",))))
        except OSError:
            pass  # already gone: its EOF is on the way

    def _kill(self, child: _Child, why: str) -> None:
        if child.ended:
            return
        logger.warning("killing child %d: %s", child.pid, why)
        child.stopping = True
        child.run = None
        self._expected_exits[child.pid] = why
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)

    def terminate(self, task_id: str, signal_name: str) -> bool:
        """Revoke with terminate: send ``signal_name`` to the child running ``task_id`` (only that child).

        Children ignore SIGTERM and SIGINT (a warm shutdown must let their tasks finish), so for those
        two the child gets SIGKILL if it still runs the task ``_TERMINATE_GRACE_S`` later. A child that
        dies ends the run with TaskRevokedError; one that survives the signal (a handler of the task's
        own) finishes the task, whose outcome is then recorded as usual.
        """
        for child in list(self._children.values()):
            run = child.run
            if run is None or run.task_id != task_id or run.future.done():
                continue
            run.terminated = signal_name
            self._expected_exits[child.pid] = f"{run.label} was revoked with terminate ({signal_name})"
            logger.warning("sending %s to child %d running %s (revoked)", signal_name, child.pid, run.label)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, getattr(signal, signal_name))
            if signal_name in ("SIGTERM", "SIGINT"):
                loop = self._running_loop()
                loop.call_later(_TERMINATE_GRACE_S, self._terminate_late, child, run)
            return True
        return False

    def _terminate_late(self, child: _Child, run: _Run) -> None:
        if child.run is run and not child.ended:
            self._kill(child, f"{run.label} still running {_TERMINATE_GRACE_S:g}s after {run.terminated}")
            if not run.future.done():
                run.future.set_exception(TaskRevokedError(f"{run.label} terminated (revoked)"))
            self._fill()

    def _hard_limit(self, child: _Child, run: _Run, hard_s: float) -> None:
        if child.run is not run or run.future.done():
            return
        self._kill(child, f"time limit ({hard_s:g}s) of {run.label} exceeded")
        run.future.set_exception(
            TimeLimitExceeded(f"{run.label}: time limit ({hard_s:g}s) exceeded; its child process was killed")
        )
        self._fill()

    # ---- reading children (on the loop) ----------------------------------------------------------
    def _on_readable(self, child: _Child) -> None:
        messages, eof = child.conn.recv_available()
        for data in messages:
            self._on_message(child, data)
        if eof:
            self._ended(child)

    def _on_message(self, child: _Child, data: bytes) -> None:
        try:
            message = pickle.loads(data)
        except Exception as exc:  # a value that cannot be rebuilt here: fail that run, keep the child
            message = ("done", child.run.seq if child.run else 0, False, _unreadable(exc), None, 0.0)
        if message[0] == "ready":
            if not child.ready.done():
                child.ready.set_result(None)
            self._release(child)
            return
        _, seq, ok, payload, rss_kib, runtime_s = message
        child.tasks += 1
        child.rss_kib = rss_kib
        run, child.run = child.run, None
        answered = run is not None and run.seq == seq and not run.future.done()
        ahead = child.ahead
        if ahead is not None:
            # the child took the run sent ahead the moment it answered: it runs now, in the slot of
            # the run that just ended (whose release then frees nothing)
            child.ahead = None
            self._begin(child, ahead, sent=True)
            if ahead.wait is not None and self.gate is not None:
                if answered:
                    self.gate.pass_to(ahead.wait, self._running_loop().time())
                elif not ahead.wait.done() and self.gate.try_take():  # no slot to pass: a free one
                    ahead.wait.admit(self._running_loop().time())
            self._after_task(child)
        elif self._pending and answered and self.gate is not None and self._free_for_next(child):
            # the oldest queued run takes the child and the slot of the run that just ended
            nxt = self._pending.popleft()
            assert nxt.wait is not None
            self.gate.pass_to(nxt.wait, self._running_loop().time())
            self._begin(child, nxt)
            self._fill_ahead(child)
        else:
            self._release(child)  # first: idle (or recycled) before the next run looks for a child
            if answered and self.pass_on is not None:
                self.pass_on()  # the next run is woken before this one
        if answered:
            assert run is not None
            run.runtime_s = runtime_s
            if ok:
                run.future.set_result(payload)
            else:
                run.future.set_exception(unpack_exception(payload))

    def _free_for_next(self, child: _Child) -> bool:
        """``child`` answered and has nothing ahead: may it run another task now (no recycling or
        autoscale stop due, no run holding a slot waiting for a child)? Else :meth:`_release` decides."""
        if child.stopping or self._closing or self._waiters or self._capacity() > self.target:
            return False
        return not self._recycle_reason(child)

    def _after_task(self, child: _Child) -> None:
        """``child`` answered and went on with the run sent ahead: recycle it after that one if a limit
        is reached now (it stops once it answers), else send it the next queued run ahead."""
        if self._closing or not self._retire(child, " (after the task it runs)"):
            self._fill_ahead(child)

    def _recycle_reason(self, child: _Child) -> str:
        """Why ``child`` must be replaced now (a recycling limit), or ""."""
        age_s = time.monotonic() - child.started
        return self.recycling.reason(child.tasks, child.rss_kib, age_s, child.age_limit_s)

    def _retire(self, child: _Child, when: str = "") -> bool:
        """Stop ``child`` (once it is free) if it reached a recycling limit or autoscale wants fewer
        children; whether it was."""
        reason = self._recycle_reason(child)
        if reason:
            self.recycled += 1
            self._stop(child, f"recycling: {reason}{when}")
            self._fill()
            return True
        if self._capacity() > self.target:
            self._stop(child, f"autoscale: fewer children needed{when}")
            return True
        return False

    def _ended(self, child: _Child) -> None:
        """The child's socket reached EOF: the process exited (or is about to)."""
        if child.ended:
            return
        child.ended = True
        loop = self._running_loop()
        with contextlib.suppress(Exception):
            loop.remove_reader(child.conn.fileno())
        child.conn.close()
        untaken = ipc.drain(child.inbox)  # requests it never read
        child.requests.close()
        child.inbox.close()
        self._children.pop(child.pid, None)
        with contextlib.suppress(ValueError):
            self._idle.remove(child)
        if child.age_timer is not None:
            child.age_timer.cancel()
        if not child.ready.done():
            child.ready.set_exception(WorkerLostError(f"child {child.pid} died while starting"))
            child.ready.exception()  # retrieved: start() reports it
        run, child.run = child.run, None
        ahead, child.ahead = child.ahead, None
        if ahead is not None and not ahead.future.done():
            if ahead.seq in untaken and not self._closing:  # it never started: queued again
                ahead.child = None
                self._place(ahead)
            elif ahead.seq in untaken:
                if ahead.wait is not None:
                    ahead.wait.ended = True
                ahead.future.set_exception(NotStarted())  # its delivery goes back
            else:
                self.lost += 1
                logger.warning("child %d died with %s taken", child.pid, ahead.label)
                ahead.future.set_exception(
                    WorkerLostError(f"the child process (pid {child.pid}) running {ahead.label} died")
                )
        if run is not None and run.terminated and not run.future.done():
            run.future.set_exception(
                TaskRevokedError(f"{run.label} terminated by {run.terminated} (revoked)")
            )
        elif run is not None and not run.future.done():
            self.lost += 1
            logger.warning("child %d died while running %s", child.pid, run.label)
            run.future.set_exception(
                WorkerLostError(f"the child process (pid {child.pid}) running {run.label} died")
            )
        elif not child.stopping and not self._closing:
            logger.warning("child %d ended while idle", child.pid)
        if not self._children and self._all_ended is not None:
            self._all_ended.set()
        self._fill()

    def _on_exits(self, server: ForkServer) -> None:
        try:
            exits = read_exits(server.status) if server.status is not None else []
        except (EOFError, OSError):
            with contextlib.suppress(Exception):
                self._running_loop().remove_reader(server.status.fileno())  # type: ignore[union-attr]
            if server is self._server and not self._closing:
                logger.error("the process pool's fork server died; its children die with it")
                server.close()
            return
        for pid, how in exits:
            why = self._expected_exits.pop(pid, None)
            if why is None and not self._closing:
                logger.warning("child %d ended: %s", pid, how)
            else:
                logger.debug("child %d ended (%s): %s", pid, why, how)


def unpack_exception(packed: tuple[bytes | None, str, str, str]) -> Exception:
    """Rebuild an exception sent by a child; a :class:`TaskError` naming it when it cannot be."""
    pickled, type_path, message, formatted = packed
    exc: Any = None
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)
        except Exception:
            exc = None
    if not isinstance(exc, Exception):  # unpicklable, or a BaseException (SystemExit) from the task
        text = f"{type_path}: {message}" if message else type_path
        exc = TaskError(text, exc_type=type_path, remote_traceback=formatted)
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, REMOTE_TRACEBACK_ATTR, formatted)
    return exc  # type: ignore[no-any-return]


def _unreadable(exc: Exception) -> tuple[None, str, str, str]:
    text = f"the answer of a child process could not be read: {exc}"
    return None, "celeriac.exceptions.TaskError", text, text
