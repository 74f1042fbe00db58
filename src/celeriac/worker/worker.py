"""The worker: one asyncio event loop that owns all Redis I/O and runs tasks through a pool.

Its loops are small and independent, started in :meth:`Worker.run` (read it top to bottom):

* fetch     takes messages for free execution slots (a blocking read when idle, batches when
            many slots are free), plus a prefetch bounded by measured task duration whose messages
            go back if they do not start within milliseconds (``prefetch.py``), so nothing waits
            reserved behind a busy task (here);
* settle    records outcomes in batches: results first, then acks/retries/dead letters in one script
            per queue (group commit, ``settle.py``);
* lease, reclaim, prune, schedule, heartbeat, autoscale: ``maintenance.py``;
* control   follows the revocation stream and terminates revoked running tasks (``revoking.py``).

Each delivery's path (here): fetched → prepared (an outcome at once for a message that must not run)
→ run by the pool in a slot → outcome submitted to the settle loop, or handed back (its process
died). ``inflight.py`` tracks every delivery on that path and holds the invariant that a delivery
nothing runs or records never keeps its lease. Where code runs is the pool's business (``pools.py``,
``process/``, ``greenlets.py``) and so are time limits (``limits.py``); what an outcome means is
the executor's (``executor.py``).

Shutdown (``shutdown.py``): the first SIGTERM/SIGINT stops fetching, hands unstarted messages back at
once, lets running tasks finish within ``worker_shutdown_grace_s`` and hands the rest back; a second
signal does that at once (cold). No task is lost either way: a handed-back message runs again on
another worker. A worker over a recycling limit (``recycling.py``) stops the same warm way, then
``celeriac worker`` re-executes it.

Why this module is long: the ``Worker`` class keeps public control, ``run()`` (read top to bottom),
the fetch loop and one delivery's path together; its state (``inflight.py``), maintenance loops
(``maintenance.py``) and shutdown (``shutdown.py``) already live beside it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import TYPE_CHECKING

from .. import signals as _signals

# The Redis broker loads with the worker, first (a Redis worker would load it at its first command):
# it is the largest module, and compiling it (no .pyc: a fresh checkout, PYTHONDONTWRITEBYTECODE)
# allocates and frees ~4 MB; what the imports after it (redis-py, the worker's own modules) allocate
# then fills that space. Loaded last, it left holes in the heap that malloc_trim cannot give back:
# +0.5 MiB idle RSS (benchmarks/README.md, branch rss9).
from ..broker import redis as _redis_broker  # noqa: F401  (loaded for the order above)
from ..broker.base import Delivery, Enqueue
from ..exceptions import (
    BrokerConnectionError,
    BrokerError,
    BrokerFullError,
    ChordError,
    ConfigurationError,
    WorkerShutdown,
)
from ..monitor.recorder import Recorder
from ..outcomes import OutcomeReporter
from .autoscale import Autoscale, Autoscaler
from .collector import consuming_gc, release_freed_memory
from .commands import apply_commands
from .executor import Executor, Job, Outcome
from .flow import beat_scheduler, expired_behind_limit, flow_gate, revoked
from .identity import claim_worker_id, expand_worker_id
from .imports import import_task_modules, task_modules, unknown_task_hint
from .inflight import Inflight, Slot
from .limits import NO_LIMITS, TimeLimits, limit_caveats
from .maintenance import Maintenance
from .pools import DEFAULT_CONCURRENCY, ThreadBackedPool, make_pool
from .prefetch import Prefetch
from .recycling import NO_RECYCLING, Recycling, SelfRecycling
from .revoking import Revoking
from .settle import Settler
from .shutdown import shut_down
from .slotgate import NotStarted, QueuedWait, SlotGate
from .stats import WorkerStats
from .workflow import user_tasks, workflow_hook

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..message import Message

logger = logging.getLogger(__name__)

_MAX_BACKOFF_S = 5.0
_BLOCK_MS = 5_000
#: pools whose slots run in parallel, where prefetch pays (asyncio and gevent already fetch for 100
#: slots at once; their prefetched tasks would wait on the GIL and miss their start deadline)
PREFETCHING_POOLS = ("threads", "processes")

__all__ = ["Worker", "WorkerStats"]


@dataclass
class _RunState:
    """What exists only while :meth:`Worker.run` runs: its loop and the events its loops wait on."""

    loop: asyncio.AbstractEventLoop
    #: no new work: fetching ends (a stop, the end of a burst, a recycle)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: hand running tasks back now instead of letting them finish
    cold: asyncio.Event = field(default_factory=asyncio.Event)
    #: every outcome recorded: the maintenance loops end (and a waiting schedule loop wakes)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: a slot freed, or the slot count changed: a fetch loop waiting for a slot re-checks
    slot_free: asyncio.Event = field(default_factory=asyncio.Event)
    #: a delivery was handed back: the reclaim loop runs now
    reclaim_wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: one fetch filled every slot: the autoscale loop looks now
    autoscale_wake: asyncio.Event = field(default_factory=asyncio.Event)


#: logged by a worker that starts with no task registered (the usual Celery layout: tasks elsewhere)
NO_TASKS_WARNING = (
    "no task is registered: this worker would dead-letter every message as 'unknown task'. The app "
    "module defines no task; name the task modules with -I proj.tasks (or include=[...] / the "
    "imports setting), or call app.autodiscover_tasks([...]) in the app module"
)


class Worker:
    """Consumes queues and runs tasks.

    Args:
        app: the app whose tasks run here.
        queues: queues in priority order (default: the app's default queue).
        concurrency: execution slots (default 100 for ``asyncio``, 10 for ``threads``, one per CPU for
            ``processes``).
        pool: ``"asyncio"``, ``"threads"``, ``"processes"`` or ``"gevent"`` (see ``gevent_patch.py``).
        worker_id: a unique name, with Celery's ``%h``/``%n``/``%d``/``%i``/``%I`` expanded (default:
            host, pid and a random suffix). :meth:`run` refuses an id a live worker holds (identity.py).
        burst: stop once the queues are empty and nothing runs (handy for scripts and tests).
        on_outcome: called on the loop with each delivery's outcome once it is recorded (tests, demo).
        limits: default time limits for tasks that set none (``--soft-time-limit``, ``--time-limit``).
        recycling: when to replace a child process (``processes``) or re-execute this worker (the
            other pools): after N tasks, above a resident size, or with age.
        autoscale: let the concurrency follow the backlog between ``autoscale.min`` (the start) and
            ``autoscale.max``; ``concurrency`` is then ignored.
        include: task modules to import (``-I``), besides those ``worker_queue_modules`` maps to the
            queues consumed. Imported here, before any child process is forked.
        beat: also run a periodic scheduler (``-B``, :mod:`celeriac.beat`): one more maintenance loop.

    Raises:
        ConfigurationError: a task module to import does not exist, or (``beat``) an invalid
            periodic entry.
    """

    def __init__(
        self,
        app: Celeriac,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        pool: str = "asyncio",
        worker_id: str | None = None,
        burst: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None,
        limits: TimeLimits = NO_LIMITS,
        recycling: Recycling = NO_RECYCLING,
        autoscale: Autoscale | None = None,
        include: Sequence[str] = (),
        events: bool = True,
        beat: bool = False,
    ) -> None:
        self.app = app
        self.conf = app.conf
        self.queues = list(dict.fromkeys(queues or [self.conf.task_default_queue]))
        #: task modules this worker imported besides the app module (lean workers)
        _signals.import_modules.send(sender=app)  # Django's setup before its apps' tasks modules
        # the app's autodiscovered modules and imports/include settings (Celery's names), then -I
        include = [*app.discover_tasks(), *self.conf.imports, *self.conf.include, *include]
        self.task_modules = task_modules(self.conf.worker_queue_modules, self.queues, include)
        import_task_modules(self.task_modules)
        self.pool_name = pool
        self.autoscale = autoscale
        concurrency = concurrency or self.conf.worker_concurrency
        self.concurrency = autoscale.min if autoscale else concurrency or DEFAULT_CONCURRENCY.get(pool, 10)
        if self.concurrency < 1:
            raise ConfigurationError("concurrency", f"must be >= 1, got {self.concurrency}")
        # per limit: the flag's value, else the app's worker_max_tasks/memory_per_child (Celery's names)
        if recycling.max_tasks is None and self.conf.worker_max_tasks_per_child is not None:
            recycling = replace(recycling, max_tasks=self.conf.worker_max_tasks_per_child)
        if recycling.max_memory_kib is None and self.conf.worker_max_memory_per_child is not None:
            recycling = replace(recycling, max_memory_kib=self.conf.worker_max_memory_per_child)
        self.recycling = recycling
        #: why this worker stopped to be replaced (whole-worker recycling), or "" (see ``start``)
        self.recycle_reason = ""
        self.pool = make_pool(pool, self.concurrency, app, recycling)
        # pools without children recycle the whole worker; the processes pool recycles its children
        self._self_recycling = (
            SelfRecycling(recycling) if recycling and not self.pool.recycles_children else None
        )
        self.autoscaler = Autoscaler(autoscale) if autoscale else None
        self._signals = 0
        self.worker_id = (
            expand_worker_id(worker_id)  # -n worker1@%h, as in Celery
            if worker_id
            else f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.burst = burst
        self.on_outcome = on_outcome
        # per limit: the flag's value, else the app's task_time_limit / task_soft_time_limit
        self.limits = TimeLimits(
            limits.soft_s if limits.soft_s is not None else self.conf.task_soft_time_limit,
            limits.hard_s if limits.hard_s is not None else self.conf.task_time_limit,
        )
        if not self.limits:
            self.limits = NO_LIMITS  # the pools test identity first: no __bool__ call per task
        self.executor = Executor(app)
        max_slots = autoscale.max if autoscale else self.concurrency
        #: most deliveries held at once (running, prefetched, settling): the broker reads this many
        #: pending entries to check ownership, so a fetch never takes more (free_slots)
        self.max_owned = max_slots + self.conf.worker_fetch_max
        self.broker = app.broker.for_worker(max_owned=self.max_owned)
        #: how many messages beyond the free slots to hold (bounded by measured duration; prefetch.py)
        self.prefetch = Prefetch(
            max_slots, self.conf.worker_fetch_max, enabled=autoscale is None and pool in PREFETCHING_POOLS
        )
        #: admission of runs to the pool, only while prefetching (prefetch.py). A worker that does not
        #: prefetch starts whatever it took at once, as it always did: the fetch and reclaim loops each
        #: take up to ``free_slots()`` at the same moment (a fresh worker beside expired leases takes
        #: twice its slots), and a start deadline there would hand back deliveries it had just taken
        #: for slots it has (each hand-back marks the consumer in ``{queue}:reclaimed``, as a lost lease)
        self._gate = self.prefetch.slots if self.prefetch.enabled else None
        if self._gate is not None and pool == "processes":  # prefetch.py
            from .process.pool import ProcessPool  # not imported by workers of the other pools

            assert isinstance(self.pool, ProcessPool)
            self.pool.pass_on = self._gate.pass_on
            # it sends prefetched runs ahead to busy children and admits them itself (SlotGate.pass_to);
            # a slot that frees with nobody else waiting starts one of its queued runs
            self.pool.gate = self._gate
            self._gate.on_free = self.pool.start_queued
        #: the pool queues calls beyond its free threads itself (the threads pool): a prefetched run
        #: hands its call over at once instead of waiting on the loop for a slot (SlotGate.enqueue)
        self._pool_queues = self._gate is not None and getattr(self.pool, "queues_calls", False)
        #: the pool whose threads a sync task's call is handed to with no coroutine per run
        #: (_start_call): the asyncio and threads pools, when the worker does not prefetch (a prefetched
        #: run's wait for a slot, the gate's, is a coroutine's)
        self._calls_to: ThreadBackedPool | None = (
            self.pool if isinstance(self.pool, ThreadBackedPool) and self._gate is None else None
        )
        self.backend = app.backend
        #: carries workflows on (celeriac.workflow): None on a broker without Redis
        self.workflow_hook = workflow_hook(app, self.broker)
        self.lease_ms = int(self.conf.lease_s * 1000)
        self.stats = WorkerStats()
        #: the deliveries taken and not finished with (owned, running, settling)
        self.inflight = Inflight()
        self._handing_back: set[asyncio.Task[None]] = set()  # hand-backs of orphans, until done
        self._late: list[Delivery] = []  # prefetched deliveries that did not start in time (_claim_slot)
        #: records task outcomes for the dashboard (None: ``events=False`` or ``monitor_events`` off)
        self.recorder = Recorder.for_worker(app, self.worker_id, self.broker) if events else None
        self.settler = Settler(
            self.broker,
            self.backend,
            self.worker_id,
            self.inflight,
            self.stats,
            on_outcome,
            self.recheck_slots,
            results_via_broker=app.results_travel_with(self.broker),
            linger_s=self.prefetch.settle_linger_s,
            recorder=self.recorder,
            reporter=OutcomeReporter(app, self.worker_id),
        )
        #: rate and concurrency limits, paused queues (celeriac.flow; None without Redis)
        self.flow = flow_gate(app, self.broker, self.lease_ms)
        #: the embedded periodic scheduler (-B), its beat_schedule checked here
        self.beat = beat_scheduler(app) if beat else None
        self.maintenance = Maintenance(self)
        self.revoking = Revoking(app, self.broker, self.executor, self.pool)  # revoke, terminate
        self._state: _RunState | None = None  # while run() runs
        self._stop_before_run = False  # stop() was called before run() made its state
        self._ready_flag = asyncio.Event()  # set once consuming
        self._init_sent = False  # worker_init is sent once, by start() or run()

    # ---- public control --------------------------------------------------------------------------
    def start(self) -> None:
        """Run until SIGTERM/SIGINT (first: warm shutdown; second: cold). Blocks.

        Also returns when a recycling limit of a pool without children was reached, with
        :attr:`recycle_reason` set: the worker stopped fetching and finished its running tasks, and
        the caller should start it again (``celeriac worker`` re-executes itself).

        Sync tasks still running in threads after a cold or timed-out shutdown (threads cannot be
        interrupted) do not keep the process alive: they run in daemon threads, and their messages
        were handed back to run again elsewhere.
        """
        self._worker_init()  # Celery's order: worker_init, then the pool's processes
        self.pool.prepare()  # before the loop and any thread exist (the processes pool forks here)
        asyncio.run(self._main_with_signals())
        if self.pool.busy_threads:
            logger.warning(
                "exiting with %d task thread(s) still running (handed back)", self.pool.busy_threads
            )

    async def _main_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError):  # not the main thread, or not Unix
                pass
        await self.run()

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self.recycle_reason:
            # a stop asked for by the operator wins over a recycle that was draining: no re-exec
            logger.warning("%s: this worker will exit instead of re-executing", signal.Signals(sig).name)
            self.recycle_reason = ""
        if self._signals == 1:
            logger.warning(
                "%s: warm shutdown (running tasks may finish; send again for cold)", signal.Signals(sig).name
            )
            self.stop()
        else:
            logger.warning("%s again: cold shutdown, handing running tasks back", signal.Signals(sig).name)
            self.stop(cold=True)

    def stop(self, cold: bool = False) -> None:
        """Ask the worker to stop (thread-safe). ``cold``: hand running tasks back at once."""
        state = self._state
        if state is None:
            self._stop_before_run = True
            return

        def _set() -> None:
            if cold:
                state.cold.set()
            state.stop.set()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is state.loop:
            _set()
        elif not state.loop.is_closed():  # after run() returned there is nothing left to stop
            state.loop.call_soon_threadsafe(_set)

    async def wait_ready(self) -> None:
        """Return once the worker consumes its queues (await it on the worker's loop)."""
        await self._ready_flag.wait()

    @property
    def stopping(self) -> bool:
        """No new work: a stop was asked for (or the burst ended, or the worker recycles)."""
        return self._state.stop.is_set() if self._state is not None else self._stop_before_run

    @property
    def run_state(self) -> _RunState:
        """The loop and events of the current run (only while :meth:`run` runs)."""
        assert self._state is not None, "the worker is not running"
        return self._state

    def _worker_init(self) -> None:
        if not self._init_sent:
            self._init_sent = True
            _signals.worker_init.send(sender=self)

    # ---- main ------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run the worker on the current event loop until :meth:`stop` (or burst completion)."""
        self._worker_init()
        state = self._state = _RunState(asyncio.get_running_loop())
        if self._stop_before_run:
            state.stop.set()
        if not await self._connect():
            return
        await claim_worker_id(self.broker, self.worker_id, self.conf.worker_ttl_s)  # refuses a live duplicate
        self.broker.close_idle_sync()  # the start-up checks' connection: a fixed number of connections
        await self.pool.start()
        caveat = limit_caveats(self.app, self.limits, self.pool_name)  # say so at start, not pretend
        if caveat:
            logger.warning("%s", caveat)
        for warning in self.app.startup_warnings():  # risky settings (pickle), for embedded workers too
            logger.warning("%s", warning)
        age_limit_s = self._self_recycling.age_limit_s if self._self_recycling else None
        age_timer = (
            state.loop.call_later(age_limit_s, self._recycle, f"{age_limit_s:.0f}s old")
            if age_limit_s
            else None
        )
        if self.task_modules:
            logger.info(
                "task modules: %s (%d tasks registered)", ", ".join(self.task_modules), user_tasks(self.app)
            )
        if not user_tasks(self.app):
            logger.warning("%s", NO_TASKS_WARNING)
        if self.conf.worker_prefetch_multiplier != 1:
            logger.info(
                "worker_prefetch_multiplier=%d: celeriac takes messages for free slots (threads and "
                "processes pools: plus a prefetch bounded by task duration, handed back if not started "
                "within milliseconds); nothing waits reserved behind a busy task",
                self.conf.worker_prefetch_multiplier,
            )
        # The fetcher stops first (no new work); the settle loop runs until every outcome is recorded;
        # the maintenance loops (leases!) stop last, once nothing is owned any more.
        fetcher = asyncio.create_task(
            self._guard("fetch", self._fetch_once, lambda: self.stopping), name="celeriac-fetch"
        )
        settler = asyncio.create_task(
            self._guard("settle", self.settler.settle_once, lambda: self.settler.done),
            name="celeriac-settle",
        )
        maintenance = [
            asyncio.create_task(self._guard(name, step, state.closed.is_set), name=f"celeriac-{name}")
            for name, step in [*self.maintenance.steps(), ("control", self._control_once)]
        ]
        try:  # visible to `celeriac status` from the moment it is ready
            await self.maintenance.publish_heartbeat()
        except BrokerError as exc:
            logger.warning("first heartbeat failed (%s); the heartbeat loop retries", exc)
        # said once `celeriac status` lists the worker (its first heartbeat): what follows the line
        # (a script, a test) can find it there
        logger.info(
            "worker %s consuming %s (pool=%s, concurrency=%d, lease=%.1fs)",
            self.worker_id,
            ",".join(self.queues),
            self.pool_name,
            self.concurrency,
            self.conf.lease_s,
        )
        self._ready_flag.set()
        _signals.worker_ready.send(sender=self)
        restore_gc = consuming_gc()
        release_freed_memory()  # what start-up freed
        try:
            await state.stop.wait()
        finally:
            try:
                if age_timer is not None:
                    age_timer.cancel()
                await shut_down(self, fetcher, settler, maintenance)
            finally:  # however the run ends: a stop, the end of a burst, a cancellation, an error
                restore_gc()
            _signals.worker_shutdown.send(sender=self)

    async def _connect(self) -> bool:
        """Check the server and open the queues, waiting for Redis if it is down or full.

        A worker started before its Redis (containers start in any order) waits instead of exiting.
        Returns False when asked to stop first. A Redis that is too old raises.
        """
        backoff = 0.1
        stop = self.run_state.stop
        while not stop.is_set():
            try:
                for warning in await asyncio.to_thread(self.broker.server_warnings):
                    logger.warning("%s", warning)
                await self.broker.open(self.queues)
                return True
            except (BrokerConnectionError, BrokerFullError) as exc:
                logger.warning("cannot start consuming yet: %s; retrying in %.1fs", exc, backoff)
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(_MAX_BACKOFF_S, backoff * 2)
        await self.broker.close()
        self.broker.close_sync()
        return False

    async def _guard(self, name: str, step: Callable[[], Awaitable[None]], done: Callable[[], bool]) -> None:
        """Run ``step`` until ``done()``; survive Redis outages with capped exponential backoff.

        Loops end by their flag, not by cancellation alone: a client library may turn a cancellation
        during a blocking read into a connection error, which must not restart the loop forever.
        """
        backoff = 0.05
        while not done():
            try:
                await step()
                backoff = 0.05
                continue
            except asyncio.CancelledError:
                raise
            except BrokerConnectionError as exc:
                logger.warning("%s: %s; retrying in %.2fs", name, exc, backoff)
            except BrokerError as exc:
                logger.error("%s: %s; retrying in %.2fs", name, exc, backoff)
            except Exception:  # a bug must not kill the loop silently: log it and keep going
                logger.exception("%s: unexpected error; retrying in %.2fs", name, backoff)
            if done():
                return
            await asyncio.sleep(backoff)
            backoff = min(_MAX_BACKOFF_S, backoff * 2)

    # ---- fetch -----------------------------------------------------------------------------------
    def free_slots(self) -> int:
        """Execution slots free for a new delivery (plus the bounded prefetch, ``prefetch.py``)."""
        free = self.concurrency + self.prefetch.extra - self.inflight.running
        # outcomes waiting to be settled still own their entries: never hold more than max_owned
        return min(free, self.max_owned - len(self.inflight))

    def recheck_slots(self) -> None:
        """Wake a fetch loop waiting for a free slot (a run ended, outcomes were recorded, a resize)."""
        if self._state is not None:
            self._state.slot_free.set()

    async def _fetch_once(self) -> None:
        state = self.run_state
        free = self.free_slots()
        if self._gate is not None and free > 0:
            # prefetching: the extra only while slots flow with short tasks, and a busy pool's buffer
            # refilled when three quarters are gone, two at least: bigger, fewer reads, and the quarter
            # left (2.5 ms of tasks) outlasts the read, so no slot idles (prefetch.py)
            free = min(free, self.prefetch.to_fetch(self.inflight.running, state.loop.time()))
        if free <= 0:
            state.slot_free.clear()
            await state.slot_free.wait()
            return
        count = min(free, self.conf.worker_fetch_max)
        block_ms = 0 if self.burst else _BLOCK_MS
        queues = self.flow.consumed(self.queues) if self.flow is not None else self.queues
        if not queues:  # every queue paused: take nothing; the flow loop notices a resume
            await asyncio.sleep(0.5)
            return
        deliveries = await self.broker.fetch(queues, self.worker_id, count, block_ms)
        if deliveries:
            # one time for the whole fetch: the start deadlines of its prefetched runs are one deadline
            # (a worker descheduled between two of them would otherwise split them in two)
            fetched_at = state.loop.time()
            for d in deliveries:
                self.start_delivery(d, fetched_at)
        self.revoking.terminate_pending(self.inflight.running_runs)  # learned with this fetch
        commands = self.broker.take_controls()  # `celeriac control shutdown`, read with this fetch
        if commands:
            apply_commands(self, commands)
        if self.autoscale and len(deliveries) >= count and self.free_slots() <= 0:
            state.autoscale_wake.set()  # every slot taken by one fetch: there may be more: grow now
        if deliveries:
            # let the new tasks take their first step before this loop sends its next (blocking) read
            await asyncio.sleep(0)
        elif self.burst:
            await self._maybe_finish_burst()

    async def _maybe_finish_burst(self) -> None:
        if self.inflight.running or self.settler.pending:
            slot_free = self.run_state.slot_free
            slot_free.clear()
            await slot_free.wait()
            return
        stats = [await asyncio.to_thread(self.broker.stats, q) for q in self.queues]
        if any(s.ready or s.running for s in stats):
            return
        if any(s.delayed for s in stats):
            await asyncio.sleep(0.01)  # delayed work remains: wait for the schedule loop to promote it
            return
        self.stop()  # sets the stop event at once (we are on the loop): the fetch loop ends by its flag

    async def _control_once(self) -> None:
        """The control loop: revocations, and terminates of running tasks (``revoking.py``)."""
        await self.revoking.control_once(self.inflight.running_runs)
        commands = self.broker.take_controls()  # `celeriac control shutdown`, `celeriac inspect`
        if commands:
            apply_commands(self, commands)

    # ---- one delivery ------------------------------------------------------------------------------
    def start_delivery(self, d: Delivery, fetched_at: float | None = None) -> None:
        """Take ``d`` (fetched or reclaimed): run it in a slot, or record why it must not run.

        ``fetched_at``: the loop's clock when it was fetched (its start deadline runs from then), now
        when not given."""
        flow = self.flow  # each attribute read once: this runs for every task
        if flow is not None and d.queue in flow.paused:  # read just before a pause
            self.run_state.loop.create_task(self._hand_back_unstarted([d]))
            return
        inflight = self.inflight
        slot = inflight.take(d)
        prepared = self.executor.prepare(d.data, queue=d.queue, delivery=d.deliveries)
        if isinstance(prepared, Outcome):  # undecodable, unknown task, wrong arguments, expired
            if prepared.reason.startswith("unknown task"):
                hint = unknown_task_hint(prepared.task_name, self.app.tasks, self.task_modules)
                prepared = replace(prepared, reason=prepared.reason + hint)
            if self.recorder is not None:
                self.recorder.note(d, prepared, None, ran=False)
            if flow is not None and prepared.message is not None:  # expired behind a limit
                freeing = expired_behind_limit(flow, d, prepared)
                if freeing is not None:
                    self.run_state.loop.create_task(freeing)
            if self.workflow_hook is not None and prepared.task_id is not None:  # a workflow member?
                self.run_state.loop.create_task(self._submit_unrun(d, prepared))
                return
            self.settler.submit(d, prepared)
            return
        revoked = self.revoking.drop(prepared) if self.revoking.ids else None  # nothing revoked: no call
        if revoked is not None:  # revoked before it started: it never runs
            revoked.message = prepared.message
            if flow is not None and (freeing := expired_behind_limit(flow, d, revoked)) is not None:
                self.run_state.loop.create_task(freeing)
            if self.recorder is not None:
                self.recorder.note(d, revoked, prepared.message, ran=False)
            self.settler.submit(d, revoked)
            return
        # loop.create_task: asyncio.create_task would look the loop up again
        state = self._state
        assert state is not None, "the worker is not running"
        loop = state.loop
        # when it was fetched: only a prefetching worker's start deadline reads it (_claim_slot)
        if fetched_at is None:
            fetched_at = loop.time() if self._gate is not None else 0.0
        calls_to = self._calls_to
        run: asyncio.Future[None]
        if flow is not None and flow.limited(prepared.task):
            run = loop.create_task(self._admit(slot, prepared, fetched_at))
        elif (
            calls_to is not None
            and not prepared.task.is_async
            and self._late_ack(prepared)
            and (self.workflow_hook is None or not prepared.message.extra)
            and self.app.tracing is None
        ):
            # a sync call with nothing to await before or after it: no coroutine (see _start_call)
            run = self._start_call(slot, prepared, calls_to, loop)
        else:
            run = loop.create_task(self._execute(slot, prepared, fetched_at))
        inflight.start(slot, run)
        if self.autoscaler is not None:
            self.autoscaler.task_started(inflight.running)

    async def _claim_slot(self, gate: SlotGate, slot: Slot, fetched_at: float) -> bool:
        """Wait for a free slot; False (and the delivery handed back) if none freed in time.

        Only runs of a prefetching worker come here, and only those beyond its slots wait
        (``prefetch.py``): a long task never holds them hostage.
        """
        if gate.try_take():  # free: no suspension
            return True
        if await gate.take(self.run_state.loop, fetched_at):
            return True
        self._missed_start(slot)
        return False

    def _missed_start(self, slot: Slot) -> None:
        """A prefetched run that did not start in time: its delivery goes back to the queue."""
        d = slot.delivery
        self.prefetch.missed_start()
        self.inflight.run_ended(slot)
        self.inflight.drop(d)
        self.recheck_slots()
        self._late.append(d)
        if len(self._late) == 1:  # the first of this loop turn: one hand-back for all of them
            self.run_state.loop.call_soon(self._hand_back_late)

    def _hand_back_late(self) -> None:
        """Hand back the prefetched deliveries that did not start in time, in one call.

        Their waits end together (the same long tasks held every slot): one release script for all
        of them, not one each. Tracked with the orphans' hand-backs, which shutdown waits for.
        """
        late, self._late = self._late, []
        if not late:  # handed back already (shutdown: handed_back)
            return
        task = self.run_state.loop.create_task(self._release_unstarted(late))
        self._handing_back.add(task)
        task.add_done_callback(self._handing_back.discard)

    async def _release_unstarted(self, deliveries: list[Delivery]) -> None:
        try:
            await self.broker.release(self.worker_id, deliveries, started=False)
        except BrokerError as exc:
            logger.warning(
                "could not hand %d prefetched deliveries back (%s): they return after the lease",
                len(deliveries),
                exc,
            )

    async def _execute(self, slot: Slot, job: Job, fetched_at: float) -> None:
        d = slot.delivery
        gate = self._gate
        resolved = job.resolved  # _late_ack, inlined (it runs for every task)
        early = not (resolved.acks_late if resolved is not None else job.acks_late)
        queued: QueuedWait | None = None
        if gate is not None:
            if gate.try_take():  # free: no suspension
                pass
            elif (
                self._pool_queues
                and not gate.parked
                and not early
                and not job.task.is_async
                and (self.workflow_hook is None or not job.message.extra)
            ):
                # A sync call that reaches the pool in this step (no ack, no workflow read first): it
                # waits in the pool's queue, behind the calls that wait there already, and its start
                # deadline withdraws it from there. Not while runs are parked on the loop for a slot
                # (gate.parked): their calls would queue behind later ones that no slot was given to.
                queued = job.admission = gate.enqueue(self.run_state.loop, fetched_at)
            elif not await self._claim_slot(gate, slot, fetched_at):
                return
            admitted_s = self.run_state.loop.time()  # the run time, measured for the prefetch bound
        outcome: Outcome | None = None
        try:
            if early:
                # at-most-once: the message is acked before the task starts
                acked = await self.settler.ack_now(d)
                self.inflight.acked_early(slot)
                if not acked:
                    return
            if self.workflow_hook is not None and job.message.extra:  # a chord body reads its values
                try:
                    job = await self.workflow_hook.before_run(job)
                except ChordError as exc:  # the chord's state expired: the body fails, saying so
                    outcome = self.executor.finish(job, exc=exc)
            if outcome is None:  # Revoking.run, inlined (it runs for every task)
                revoking = self.revoking
                try:
                    if revoking.ids:
                        revoking.check_acked(job)
                    outcome = await self.executor.run(job, self.pool, self.limits.for_job(job))
                except NotStarted:  # withdrawn from the pool's queue at its start deadline
                    self._missed_start(slot)
                    return
                except asyncio.CancelledError as cancel:
                    outcome = revoking.cancelled(d, job, cancel)  # a shutdown's cancellation: raised
                if revoking.terminating:
                    outcome = revoking.finished(d, job, outcome)
        finally:
            ours = self.inflight.run_ended(slot)  # False: shutdown took the run over
            state = self._state  # recheck_slots(), inlined
            withdrawn = False
            if gate is not None:
                now_s = self.run_state.loop.time()
                if queued is None:
                    gate.release()
                elif queued.admitted:
                    admitted_s = queued.admitted_s  # when a release handed it its slot
                    gate.release()
                else:
                    # withdrawn at its deadline, or ended before a release handed it a slot (a thread
                    # took its call ahead of it; a cancellation): it holds none, and gets none now
                    withdrawn = queued.ended
                    queued.end()
                    admitted_s = now_s
            if withdrawn:
                pass  # handed back (_missed_start): nothing ran
            elif gate is not None:
                prefetch = self.prefetch
                # the task's own run time where the pool measured it (a child's), else its time in
                # the slot: what a prefetched message would wait behind it
                ran_s = job.ran_s
                prefetch.ran(now_s, now_s - admitted_s if ran_s is None else ran_s)
                # wake the fetch loop only when it would fetch (prefetch.py): a buffer still full
                # enough is refilled at a later end
                if state is not None and prefetch.refill_wanted(self.inflight.running, now_s):
                    state.slot_free.set()
            elif state is not None:
                state.slot_free.set()
            if outcome is None and ours and slot.owned:
                # No outcome will ever come (a cancellation that shutdown did not ask for, an error
                # before the task ran): never keep renewing the lease of a delivery nothing runs.
                self.hand_back_orphans([d], "its run ended without an outcome")
        rest = self._conclude(d, job, outcome, early)
        if rest is not None:
            await rest

    @staticmethod
    def _late_ack(job: Job) -> bool:
        """The job's delivery is acked after its outcome (at-least-once), not before its task runs."""
        resolved = job.resolved  # Job.acks_late, its usual case inlined (options resolved by prepare)
        return resolved.acks_late if resolved is not None else job.acks_late

    def _conclude(
        self, d: Delivery, job: Job, outcome: Outcome, early: bool
    ) -> Coroutine[None, None, None] | None:
        """What follows a run's outcome, for both ways a run goes (a coroutine, :meth:`_execute`; a
        call started without one, :meth:`_call_ended`): recycling, recording, and the outcome to the
        settler. Returns the rest as a coroutine when it must await something first (a hand-back, a
        requeue after an early ack, a workflow's successors)."""
        if self._self_recycling is not None:
            reason = self._self_recycling.after_task()
            if reason:
                self._recycle(reason)
        outcome.message = job.message
        if self.recorder is not None:
            self.recorder.note(d, outcome, job.message)
        if (
            outcome.kind == "release"
            or (early and outcome.kind != "ack")
            or (self.workflow_hook is not None and job.message.extra)
        ):
            return self._conclude_later(d, job, outcome, early)
        self.settler.submit(None if early else d, outcome)
        return None

    async def _conclude_later(self, d: Delivery, job: Job, outcome: Outcome, early: bool) -> None:
        """:meth:`_conclude`'s part that awaits."""
        if outcome.kind == "release":
            await self._hand_back_lost(d, outcome)
            if isinstance(outcome.exc, WorkerShutdown):
                self.stop()
            return
        if early and outcome.kind != "ack":
            await self._requeue_after_early_ack(d, outcome)
        hook = self.workflow_hook
        if hook is not None and job.message.extra and not await self._carry_on(d, job.message, outcome):
            return
        self.settler.submit(None if early else d, outcome)

    # ---- a sync call without a coroutine ----------------------------------------------------------------
    # A sync task that needs nothing awaited before or after its call (acked late, no workflow step to
    # read, not prefetched, no tracing span) runs as _execute would run it, without the coroutine: its
    # call goes to the pool's threads at once, and the pool's batched hand-back calls _call_ended with
    # its value. Its slot's run is a plain future, completed there: shutdown waits for it and cancels it
    # as it would a coroutine's task (a cancelled call is not started, and its value is dropped). Per
    # run that saves an asyncio Task, a future, its coroutine chain and two turns of the loop.
    def _start_call(
        self, slot: Slot, job: Job, pool: ThreadBackedPool, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[None]:
        run: asyncio.Future[None] = loop.create_future()
        then = functools.partial(self._call_ended, slot, job, run, perf_counter())
        self.executor.start_call(job, pool, self.limits.for_job(job), run, then)
        return run

    def _call_ended(
        self,
        slot: Slot,
        job: Job,
        run: asyncio.Future[None],
        started: float,
        value: object,
        error: BaseException | None,
    ) -> None:
        """A call of :meth:`_start_call` ended (on the loop): what the rest of :meth:`_execute` does
        with a value or an exception out of ``executor.run``."""
        d = slot.delivery
        revoking = self.revoking
        outcome: Outcome | None = None
        try:
            if error is None or isinstance(error, (Exception, WorkerShutdown)):
                outcome = self.executor.concluded(job, started, value, error)
            elif isinstance(error, asyncio.CancelledError):  # as _execute: raised unless a terminate
                outcome = revoking.cancelled(d, job, error)
            else:
                raise error  # SystemExit, KeyboardInterrupt: out of the loop, as out of a task
            if revoking.terminating:
                outcome = revoking.finished(d, job, outcome)
        except asyncio.CancelledError:
            pass  # no outcome: handed back below, as _execute's cancelled run
        finally:
            ours = self.inflight.run_ended(slot)  # False: shutdown took the run over
            if not run.done():
                run.set_result(None)
            state = self._state
            if state is not None:
                state.slot_free.set()
            if outcome is None and ours and slot.owned:
                self.hand_back_orphans([d], "its run ended without an outcome")
        if outcome is None:
            return
        rest = self._conclude(d, job, outcome, False)
        if rest is not None:  # a hand-back (WorkerShutdown): tracked as orphans' hand-backs are
            task = asyncio.ensure_future(rest)
            self._handing_back.add(task)
            task.add_done_callback(self._handing_back.discard)

    # ---- workflows (celeriac.workflow; the hook is worker/workflow.py) --------------------------------
    async def _carry_on(self, d: Delivery, message: Message, outcome: Outcome) -> bool:
        """Send what follows a workflow task's outcome before the outcome is recorded (its ack): a
        crash in between runs the task again, and its successors are deduplicated by id. False when
        Redis refused: the delivery is handed back to run again."""
        assert self.workflow_hook is not None
        # its outcome is being recorded, the workflow's part first: while the successors are on their
        # way, no slot runs it, and the lease loop must not take it for an orphan (handed back, the
        # task would run again)
        self.inflight.settling(d)
        try:
            await self.workflow_hook.after(message, d.queue, outcome)
            return True
        except Exception as exc:
            logger.error(
                "workflow of %s[%s] not carried on (%s): it runs again",
                outcome.task_name,
                outcome.task_id,
                exc,
            )
            self.inflight.drop(d)
            try:
                await self.broker.release(self.worker_id, [d], started=True)
                self.run_state.reclaim_wake.set()
            except BrokerError:
                pass  # the lease expires and the task runs again all the same
            return False

    async def _submit_unrun(self, d: Delivery, outcome: Outcome) -> None:
        """An expired or unrunnable message: a workflow member fails what depends on it first."""
        try:
            message = self.app.codec.decode(d.data)
        except Exception:
            message = None
        if message is not None and message.extra and not await self._carry_on(d, message, outcome):
            return
        self.settler.submit(d, outcome)

    async def _hand_back_lost(self, d: Delivery, outcome: Outcome) -> None:
        """The process running the task died: hand the delivery back so that it runs again now.

        Reclaimable at once, counting a delivery, so ``max_deliveries`` still dead-letters a task that
        kills every process it runs in. If Redis cannot be reached, the lease (no longer renewed)
        expires and the delivery is reclaimed all the same.
        """
        self.stats.lost += 1
        self.inflight.drop(d)
        logger.warning("task %s[%s]: %s; handing it back", outcome.task_name, outcome.task_id, outcome.reason)
        try:
            await self.broker.release(self.worker_id, [d], started=True)
            self.run_state.reclaim_wake.set()
        except BrokerError as exc:
            logger.warning("could not hand %s back (%s): it returns after the lease", outcome.task_id, exc)

    def hand_back_orphans(self, deliveries: list[Delivery], why: str) -> None:
        """Hand back owned deliveries that nothing runs or records (the invariant of ``inflight.py``).

        A bug, never a normal path: said as an error. They stop being owned at once (no renewal); the
        hand-back itself runs as a task, so that it may be called where awaiting is not possible.
        """
        for d in deliveries:
            self.inflight.drop(d)
            logger.error("delivery %s %s: %s; handing it back to run again", d.queue, d.entry_id, why)
        task = asyncio.ensure_future(self._release_now(deliveries))
        self._handing_back.add(task)
        task.add_done_callback(self._handing_back.discard)

    async def handed_back(self, timeout_s: float) -> None:
        """Wait (boundedly) for the hand-backs of orphans (and late prefetched deliveries) started so far."""
        self._hand_back_late()  # any not sent yet
        if self._handing_back:
            await asyncio.wait(self._handing_back, timeout=timeout_s)

    async def _release_now(self, deliveries: list[Delivery]) -> None:
        try:
            await self.broker.release(self.worker_id, deliveries, started=True)
        except BrokerError as exc:
            logger.warning(
                "could not hand %d delivery(ies) back (%s): they return after the lease", len(deliveries), exc
            )
            return
        self.run_state.reclaim_wake.set()

    async def _requeue_after_early_ack(self, d: Delivery, outcome: Outcome) -> None:
        if outcome.kind == "retry":
            item = Enqueue(d.queue, outcome.retry_data, outcome.delay_ms, outcome.eta_ms)
            await asyncio.to_thread(self.broker.enqueue, item)
        elif outcome.kind == "dead":
            logger.error(
                "task %s[%s] failed for good (at-most-once): %s",
                outcome.task_name,
                outcome.task_id,
                outcome.reason,
            )

    # ---- flow control (celeriac.flow) ----------------------------------------------------------------
    async def _admit(self, slot: Slot, job: Job, fetched_at: float) -> None:
        """A task with a rate or concurrency limit: run it now, or it waits in Redis for its turn."""
        assert self.flow is not None
        d = slot.delivery
        try:
            admission = await self.flow.admit(d, job.message, job.task)
        except BrokerError as exc:
            logger.warning("flow control unavailable (%s): %s goes back to the queue", exc, job.message.id)
            admission = None
        if admission is not None and admission.kind == "run":
            try:
                await self._execute(slot, job, fetched_at)
            finally:
                try:
                    await self.flow.finished(d)
                except BrokerError as exc:  # the slot frees when its lease expires
                    logger.warning("could not free a concurrency slot of %s (%s)", job.task.name, exc)
            return
        ours = self.inflight.run_ended(slot)  # False: shutdown took the run over (it hands it back)
        self.recheck_slots()
        if not ours:
            return
        if admission is None:
            self.inflight.drop(d)
            await self._hand_back_unstarted([d])
        elif admission.kind == "expired":
            self.settler.submit(d, revoked(self.executor, job, admission.reason))
        else:  # deferred or parked: the script took it out of the stream already
            self.inflight.drop(d)

    async def _hand_back_unstarted(self, deliveries: list[Delivery]) -> None:
        try:
            await self.broker.release(self.worker_id, deliveries, started=False)
        except BrokerError:
            pass  # they return after the lease

    # ---- recycling of the whole worker (pools without children) ---------------------------------------
    def _recycle(self, reason: str) -> None:
        if self.stopping:
            return
        self.recycle_reason = reason
        logger.warning(
            "recycling this worker (%s): it stops fetching, lets its running tasks finish, and starts again",
            reason,
        )
        self.stop()
