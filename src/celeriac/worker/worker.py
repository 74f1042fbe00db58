"""The worker: one asyncio event loop that owns all Redis I/O and runs tasks through a pool.

Loops, each small and independent (started in :meth:`Worker.run`, read top to bottom):

* fetch     takes messages only for free execution slots (a blocking read when idle, batches when
            many slots are free), so nothing waits reserved behind a busy task;
* settle    records outcomes in batches: results first, then acks/retries/dead letters in one script
            per queue (group commit: a flush starts as soon as one outcome is ready, and everything
            that finishes during that flush goes in the next one, so batching adds no idle latency;
            ``settle.py``);
* lease     renews the leases of running deliveries every ``lease_s / 3``;
* reclaim   takes over deliveries of dead workers once their lease expired, and the deliveries of
            this worker's dead child processes at once;
* schedule  promotes due delayed messages, sleeping until the next due time or a wake-up;
* heartbeat refreshes this worker's liveness key (one key with a TTL, nothing broadcast);
* autoscale (with ``--autoscale``) resizes the worker to the backlog (``autoscale.py``).

Where code runs is the pool's business (``pools.py``, ``processes.py``) and so are time limits
(``limits.py``); what an outcome means is the executor's (``executor.py``).

Shutdown: the first SIGTERM/SIGINT stops fetching, hands unstarted messages back at once, lets running
tasks finish within ``worker_shutdown_grace_s`` and hands the rest back; a second signal does that at
once (cold). No task is lost either way: a handed-back message runs again on another worker. A worker
over a recycling limit (``recycling.py``) stops the same warm way, then ``celeriac worker`` re-executes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..broker.base import Delivery, Enqueue
from ..exceptions import (
    BrokerConnectionError,
    BrokerError,
    BrokerFullError,
    ConfigurationError,
    WorkerShutdown,
)
from .autoscale import Autoscale, Autoscaler
from .executor import Executor, Job, Outcome
from .identity import BEAT_FIELD, claim_worker_id, expand_worker_id, heartbeat_stamp
from .imports import import_task_modules, task_modules, unknown_task_hint
from .limits import NO_LIMITS, TimeLimits, unenforceable_hard_limits
from .pools import DEFAULT_CONCURRENCY, make_pool
from .recycling import NO_RECYCLING, Recycling, SelfRecycling
from .connections import redis_connections
from .settle import Settler, WorkerStats

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger("celeriac.worker")

_MAX_BACKOFF_S = 5.0
_SCHEDULE_MAX_WAIT_S = 5.0  # re-check delayed sets even without a wake-up (a missed pub/sub message)
_BLOCK_MS = 5_000
_PRUNE_INTERVAL_S = 60.0
_CANCEL_WAIT_S = 5.0
_AUTOSCALE_TICK_S = 1.0

__all__ = ["Worker", "WorkerStats"]


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

    Raises:
        ConfigurationError: a task module to import does not exist.
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
    ) -> None:
        self.app = app
        self.conf = app.conf
        self.queues = list(dict.fromkeys(queues or [self.conf.task_default_queue]))
        #: task modules this worker imported besides the app module (lean workers)
        self.task_modules = task_modules(self.conf.worker_queue_modules, self.queues, include)
        import_task_modules(self.task_modules)
        self.pool_name = pool
        self.autoscale = autoscale
        self.concurrency = autoscale.min if autoscale else concurrency or DEFAULT_CONCURRENCY.get(pool, 10)
        if self.concurrency < 1:
            raise ConfigurationError("concurrency", f"must be >= 1, got {self.concurrency}")
        self.recycling = recycling
        #: why this worker stopped to be replaced (whole-worker recycling), or "" (see ``start``)
        self.recycle_reason = ""
        self.pool = make_pool(pool, self.concurrency, app, recycling)
        # pools without children recycle the whole worker; the processes pool recycles its children
        self._self_recycling = (
            SelfRecycling(recycling) if recycling and not self.pool.recycles_children else None
        )
        self._autoscaler = Autoscaler(autoscale) if autoscale else None
        self._signals = 0
        self._autoscale_wake: asyncio.Event | None = None
        self._reclaim_wake: asyncio.Event | None = None
        self.worker_id = (
            expand_worker_id(worker_id)  # -n worker1@%h, as in Celery
            if worker_id
            else f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.burst = burst
        self.on_outcome = on_outcome
        self.limits = limits
        self.executor = Executor(app)
        max_slots = autoscale.max if autoscale else self.concurrency
        self.broker = app.broker.for_worker(max_owned=max_slots + self.conf.worker_fetch_max)
        self.backend = app.backend
        self.lease_ms = int(self.conf.lease_s * 1000)
        self.stats = WorkerStats()
        self._running: dict[tuple[str, str], tuple[Delivery, asyncio.Task[None], bool]] = {}
        self._owned: dict[tuple[str, str], Delivery] = {}
        self._settler = Settler(
            self.broker,
            self.backend,
            self.worker_id,
            self._owned,
            self.stats,
            on_outcome,
            self._recheck_slots,
            results_via_broker=app.results_travel_with(self.broker),
        )
        self._stopping = False  # no new work
        self._closed = False  # everything recorded: maintenance loops may end
        self._closed_event: asyncio.Event | None = None  # set with _closed: wakes a waiting schedule loop
        self._cold = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._cold_event: asyncio.Event | None = None
        self._slot_free: asyncio.Event | None = None
        self._ready_flag = asyncio.Event()  # set once consuming

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
        loop = self._loop
        if loop is None:
            self._stopping = True
            return

        def _set() -> None:
            self._stopping = True
            if cold:
                self._cold = True
                assert self._cold_event is not None
                self._cold_event.set()
            assert self._stop_event is not None
            self._stop_event.set()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _set()
        elif not loop.is_closed():  # after run() returned there is nothing left to stop
            loop.call_soon_threadsafe(_set)

    async def wait_ready(self) -> None:
        """Return once the worker consumes its queues (await it on the worker's loop)."""
        await self._ready_flag.wait()

    # ---- main ------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run the worker on the current event loop until :meth:`stop` (or burst completion)."""
        self._loop = asyncio.get_running_loop()
        self._stop_event, self._cold_event = asyncio.Event(), asyncio.Event()
        self._slot_free = asyncio.Event()
        self._autoscale_wake = asyncio.Event()
        self._reclaim_wake = asyncio.Event()
        self._closed_event = asyncio.Event()
        if self._stopping:
            self._stop_event.set()
        if not await self._connect():
            return
        await claim_worker_id(self.broker, self.worker_id, self.conf.worker_ttl_s)  # refuses a live duplicate
        await self.pool.start()
        if not self.pool.enforces_sync_hard_limit:  # say so at start-up rather than pretend
            warning = unenforceable_hard_limits(self.app, self.limits, self.pool_name)
            if warning:
                logger.warning("%s", warning)
        for warning in self.app.startup_warnings():  # risky settings (pickle), for embedded workers too
            logger.warning("%s", warning)
        age_limit_s = self._self_recycling.age_limit_s if self._self_recycling else None
        age_timer = (
            self._loop.call_later(age_limit_s, self._recycle, f"{age_limit_s:.0f}s old")
            if age_limit_s
            else None
        )
        if self.task_modules:
            logger.info(
                "task modules: %s (%d tasks registered)", ", ".join(self.task_modules), len(self.app.tasks)
            )
        logger.info(
            "worker %s consuming %s (pool=%s, concurrency=%d, lease=%.1fs)",
            self.worker_id,
            ",".join(self.queues),
            self.pool_name,
            self.concurrency,
            self.conf.lease_s,
        )
        # The fetcher stops first (no new work); the settle loop runs until every outcome is recorded;
        # the maintenance loops (leases!) stop last, once nothing is owned any more.
        fetcher = asyncio.create_task(
            self._guard("fetch", self._fetch_once, lambda: self._stopping), name="celeriac-fetch"
        )
        settler = asyncio.create_task(
            self._guard("settle", self._settler.settle_once, lambda: self._settler.done),
            name="celeriac-settle",
        )
        maintenance = [
            asyncio.create_task(self._guard(name, step, lambda: self._closed), name=f"celeriac-{name}")
            for name, step in (
                ("lease", self._lease_once),
                ("prune", self._prune_once),
                ("reclaim", self._reclaim_once),
                ("schedule", self._schedule_once),
                ("heartbeat", self._heartbeat_once),
                *([("autoscale", self._autoscale_once)] if self.autoscale else []),
            )
        ]
        try:  # visible to `celeriac status` from the moment it is ready
            await self._publish_heartbeat()
        except BrokerError as exc:
            logger.warning("first heartbeat failed (%s); the heartbeat loop retries", exc)
        self._ready_flag.set()
        try:
            await self._stop_event.wait()
        finally:
            if age_timer is not None:
                age_timer.cancel()
            await self._shutdown(fetcher, settler, maintenance)

    async def _connect(self) -> bool:
        """Check the server and open the queues, waiting for Redis if it is down or full.

        A worker started before its Redis (containers start in any order) waits instead of exiting.
        Returns False when asked to stop first. A Redis that is too old raises.
        """
        backoff = 0.1
        assert self._stop_event is not None
        while not self._stop_event.is_set():
            try:
                for warning in await asyncio.to_thread(self.broker.server_warnings):
                    logger.warning("%s", warning)
                await self.broker.open(self.queues)
                return True
            except (BrokerConnectionError, BrokerFullError) as exc:
                logger.warning("cannot start consuming yet: %s; retrying in %.1fs", exc, backoff)
            try:
                await asyncio.wait_for(self._stop_event.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(_MAX_BACKOFF_S, backoff * 2)
        await self.broker.close()
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
    def _free_slots(self) -> int:
        return self.concurrency - len(self._running)

    async def _fetch_once(self) -> None:
        assert self._slot_free is not None
        free = self._free_slots()
        if free <= 0:
            self._slot_free.clear()
            await self._slot_free.wait()
            return
        count = min(free, self.conf.worker_fetch_max)
        block_ms = 0 if self.burst else _BLOCK_MS
        deliveries = await self.broker.fetch(self.queues, self.worker_id, count, block_ms)
        for d in deliveries:
            self._start(d)
        if self.autoscale and len(deliveries) >= count and self._free_slots() <= 0:
            assert self._autoscale_wake is not None
            self._autoscale_wake.set()  # every slot taken by one fetch: there may be more: grow now
        if deliveries:
            # let the new tasks take their first step before this loop sends its next (blocking) read
            await asyncio.sleep(0)
        elif self.burst:
            await self._maybe_finish_burst()

    async def _maybe_finish_burst(self) -> None:
        assert self._slot_free is not None
        if self._running or self._settler.pending:
            self._slot_free.clear()
            await self._slot_free.wait()
            return
        stats = [await asyncio.to_thread(self.broker.stats, q) for q in self.queues]
        if any(s.ready or s.running for s in stats):
            return
        if any(s.delayed for s in stats):
            await asyncio.sleep(0.01)  # delayed work remains: wait for the schedule loop to promote it
            return
        self.stop()  # sets _stopping at once (we are on the loop): the fetch loop ends by its flag

    def _start(self, d: Delivery) -> None:
        key = (d.queue, d.entry_id)
        self._owned[key] = d
        prepared = self.executor.prepare(d.data, queue=d.queue, delivery=d.deliveries)
        if isinstance(prepared, Outcome):  # undecodable, unknown task, wrong arguments, expired
            if prepared.reason.startswith("unknown task"):
                hint = unknown_task_hint(prepared.task_name, self.app.tasks, self.task_modules)
                prepared = replace(prepared, reason=prepared.reason + hint)
            self._settler.submit(d, prepared)
            return
        assert self._loop is not None
        task = self._loop.create_task(self._execute(d, prepared))  # asyncio.create_task looks the loop up
        self._running[key] = (d, task, False)
        if self._autoscaler is not None:
            self._autoscaler.task_started(len(self._running))

    async def _execute(self, d: Delivery, job: Job) -> None:
        key = (d.queue, d.entry_id)
        early = not job.acks_late
        try:
            if early:
                # at-most-once: the message is acked before the task starts
                acked = await self._settler.ack_now(d)
                self._owned.pop(key, None)
                if not acked:
                    return
            self._running[key] = (d, self._running[key][1], True)
            outcome = await self.executor.run(job, self.pool, self.limits.for_job(job))
        finally:
            self._running.pop(key, None)
            assert self._slot_free is not None
            self._slot_free.set()
        if self._self_recycling is not None:
            reason = self._self_recycling.after_task()
            if reason:
                self._recycle(reason)
        if outcome.kind == "release":
            await self._hand_back_lost(d, outcome)
            if isinstance(outcome.exc, WorkerShutdown):
                self.stop()
            return
        if early and outcome.kind != "ack":
            await self._requeue_after_early_ack(d, outcome)
        self._settler.submit(None if early else d, outcome)

    # ---- recycling of the whole worker (pools without children) ---------------------------------------
    def _recycle(self, reason: str) -> None:
        if self._stopping:
            return
        self.recycle_reason = reason
        logger.warning(
            "recycling this worker (%s): it stops fetching, lets its running tasks finish, and starts again",
            reason,
        )
        self.stop()

    # ---- autoscale ---------------------------------------------------------------------------------
    async def _autoscale_once(self) -> None:
        """Grow when every slot is busy and messages wait; shrink after an idle window (autoscale.py)."""
        scaler = self._autoscaler
        assert scaler is not None and self._autoscale_wake is not None
        try:
            tick_s = min(_AUTOSCALE_TICK_S, scaler.bounds.idle_s / 2)
            await asyncio.wait_for(self._autoscale_wake.wait(), tick_s)
        except asyncio.TimeoutError:
            pass
        self._autoscale_wake.clear()
        if self._stopping:
            return
        backlog = None
        if scaler.wants_backlog(self.concurrency, len(self._running)):
            stats = [await asyncio.to_thread(self.broker.stats, q) for q in self.queues]
            backlog = sum(s.ready for s in stats)
        size = scaler.next_size(self.concurrency, len(self._running), backlog)
        if size != self.concurrency:
            logger.info("autoscale: %d -> %d slots (%d running)", self.concurrency, size, len(self._running))
            self.concurrency = size
            self.pool.resize(size)
            self._recheck_slots()  # a fetch loop waiting for a free slot re-checks

    def _recheck_slots(self) -> None:
        if self._slot_free is not None:
            self._slot_free.set()

    async def _hand_back_lost(self, d: Delivery, outcome: Outcome) -> None:
        """The process running the task died: hand the delivery back so that it runs again now.

        Reclaimable at once, counting a delivery, so ``max_deliveries`` still dead-letters a task that
        kills every process it runs in. If Redis cannot be reached, the lease (no longer renewed)
        expires and the delivery is reclaimed all the same.
        """
        self.stats.lost += 1
        self._owned.pop((d.queue, d.entry_id), None)
        logger.warning("task %s[%s]: %s; handing it back", outcome.task_name, outcome.task_id, outcome.reason)
        try:
            await self.broker.release(self.worker_id, [d], started=True)
            assert self._reclaim_wake is not None
            self._reclaim_wake.set()
        except BrokerError as exc:
            logger.warning("could not hand %s back (%s): it returns after the lease", outcome.task_id, exc)

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

    # ---- leases and recovery ---------------------------------------------------------------------
    async def _lease_once(self) -> None:
        await asyncio.sleep(self.conf.lease_s / 3)
        if not self._owned:
            return
        lost = await self.broker.extend(self.worker_id, list(self._owned.values()))
        settling = self._settler.in_flight
        for d in lost:
            key = (d.queue, d.entry_id)
            # A settle racing this renewal may have acked the delivery first: not a lost lease. It is
            # either still in flight (its flush keeps the delivery in _owned until the reply), or done.
            if key not in self._owned or key in settling:
                continue
            logger.warning("lease lost on %s %s (this worker was too slow or cut off)", d.queue, d.entry_id)

    async def _reclaim_once(self) -> None:
        for queue in self.queues:
            free = self._free_slots()
            if free <= 0 or self._stopping:
                break
            deliveries, dead = await self.broker.reclaim(
                queue, self.worker_id, free, self.lease_ms, self.conf.max_deliveries
            )
            if dead:
                self.stats.dead_lettered += dead
                logger.error("%d message(s) of %s dead-lettered after max_deliveries", dead, queue)
            for d in deliveries:
                self.stats.reclaimed += 1
                logger.warning(
                    "reclaimed %s %s (delivery %d) from an expired lease", queue, d.entry_id, d.deliveries
                )
                self._start(d)
        assert self._reclaim_wake is not None
        try:  # a hand-back from a dead child wakes this loop: its task runs again at once
            await asyncio.wait_for(self._reclaim_wake.wait(), min(2.0, self.conf.lease_s / 5))
        except asyncio.TimeoutError:
            pass
        self._reclaim_wake.clear()

    async def _prune_once(self) -> None:
        await asyncio.sleep(_PRUNE_INTERVAL_S)
        idle_ms = int(max(60.0, 10 * self.conf.lease_s) * 1000)
        for queue in self.queues:
            await self.broker.prune_consumers(queue, idle_ms, keep=self.worker_id)

    async def _schedule_once(self) -> None:
        waits = [await self.broker.promote(q) for q in self.queues]
        wait_s = min([w for w in waits if w is not None] + [_SCHEDULE_MAX_WAIT_S])
        if wait_s <= 0 or self._closed:
            return
        # Shutdown sets an event rather than relying on cancellation alone: a cancellation that lands as
        # the pub/sub read times out can be absorbed by the client, and the loop would wait 5 s more.
        assert self._closed_event is not None
        wake = asyncio.ensure_future(self.broker.wait_wake(self.queues, wait_s))
        closed = asyncio.ensure_future(self._closed_event.wait())
        try:
            await asyncio.wait({wake, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not wake.done():
                wake.cancel()
        if wake.done() and not wake.cancelled():
            wake.result()  # a connection error goes to the guard's backoff

    async def _heartbeat_once(self) -> None:
        await self._publish_heartbeat()
        await asyncio.sleep(self.conf.worker_ttl_s / 3)

    async def _publish_heartbeat(self) -> None:
        fields = {
            "hostname": socket.gethostname(),
            "pid": str(os.getpid()),
            "queues": ",".join(self.queues),
            "pool": self.pool_name,
            "concurrency": str(self.concurrency),
            **({"autoscale": f"{self.autoscale.max},{self.autoscale.min}"} if self.autoscale else {}),
            "running": str(len(self._running)),
            "processed": str(self.stats.processed),
            "failed": str(self.stats.failed),
            "started_at": f"{self.stats.started_at:.0f}",
            "version": __version__,
            BEAT_FIELD: heartbeat_stamp(),  # changes at every heartbeat: tells a live holder of an id
            **self.pool.info(),  # children/lost/recycled, or threads/abandoned
            **redis_connections(self.broker, self.app.broker, self.app.backend),
        }
        await self.broker.heartbeat(self.worker_id, fields, self.conf.worker_ttl_s, self.queues)

    # ---- shutdown ---------------------------------------------------------------------------------
    async def _shutdown(
        self, fetcher: asyncio.Task[None], settler: asyncio.Task[None], maintenance: list[asyncio.Task[None]]
    ) -> None:
        self._stopping = True
        assert self._slot_free is not None
        self._slot_free.set()  # a fetch loop waiting for a free slot re-checks its flag and ends
        await _end_tasks([fetcher], wait_s=0.05)  # one blocked in a read is cancelled
        try:
            await self._release_orphans()
        except BrokerError as exc:
            logger.warning("could not hand back unstarted messages (%s): they return after the lease", exc)
        await self._wait_running()
        interrupted = [d for d, _, _ in self._running.values()]
        await _end_tasks([t for _, t, _ in self._running.values()], wait_s=0.0)
        for d in interrupted:
            self._owned.pop((d.queue, d.entry_id), None)
        # record every outcome before anything else stops (the lease loop keeps them owned meanwhile)
        self._settler.close()
        try:
            await asyncio.wait_for(settler, timeout=self.conf.lease_s)
        except asyncio.TimeoutError:
            logger.warning("outcomes not recorded in time (Redis down?): those tasks return after the lease")
        try:
            if interrupted:
                n = await self.broker.release(self.worker_id, interrupted, started=True)
                logger.warning("handed %d interrupted task(s) back to the queue", n)
        except BrokerError as exc:
            logger.warning("shutdown could not reach Redis (%s): unacked tasks return after the lease", exc)
        self._closed = True
        assert self._closed_event is not None
        self._closed_event.set()
        await _end_tasks(maintenance, wait_s=0.0)
        try:
            await self.broker.unregister(self.worker_id)
            for queue in self.queues:  # this run's consumer owns nothing any more: leave the group
                await self.broker.prune_consumers(queue, 0, only=self.worker_id)
        except BrokerError:
            pass
        await self.pool.close(cold=self._cold)
        await self.broker.close()
        if self.backend is not None:
            await self.backend.close()
        logger.info("worker %s stopped (%d processed)", self.worker_id, self.stats.processed)

    async def _wait_running(self) -> None:
        """Warm shutdown: let running tasks finish within the grace period, or until a cold stop."""
        running: set[asyncio.Future[Any]] = {t for _, t, _ in self._running.values()}
        if not running or self._cold:
            return
        assert self._cold_event is not None
        grace_s = self.conf.worker_shutdown_grace_s
        logger.info("waiting up to %.0fs for %d running task(s)", grace_s, len(running))
        cold_wait = asyncio.create_task(self._cold_event.wait())
        deadline = time.monotonic() + grace_s
        while running and not cold_wait.done() and time.monotonic() < deadline:
            _done, running = await asyncio.wait(
                {*running, cold_wait},
                timeout=deadline - time.monotonic(),
                return_when=asyncio.FIRST_COMPLETED,
            )
            running.discard(cold_wait)
        cold_wait.cancel()

    async def _release_orphans(self) -> None:
        """Hand back messages taken by a fetch that was cut short, which no task has started."""
        for queue in self.queues:
            pending = await self.broker.pending(queue, self.worker_id)
            orphans = [p for p in pending if (p.queue, p.entry_id) not in self._owned]
            if orphans:
                await self.broker.release(self.worker_id, orphans, started=False)


async def _end_tasks(tasks: list[asyncio.Task[None]], wait_s: float) -> None:
    """Let ``tasks`` finish within ``wait_s``, then cancel the rest and wait for them, boundedly.

    Bounded because a library may absorb a cancellation (a client turning it into a connection error
    and retrying); shutdown must not hang on that. A task still not done is left to the loop's close.
    """
    pending = {t for t in tasks if not t.done()}
    if pending and wait_s > 0:
        _done, pending = await asyncio.wait(pending, timeout=wait_s)
    for task in pending:
        task.cancel()
    if pending:
        _done, still = await asyncio.wait(pending, timeout=_CANCEL_WAIT_S)
        for task in still:
            logger.warning("%s did not stop when cancelled; abandoning it", task.get_name())
