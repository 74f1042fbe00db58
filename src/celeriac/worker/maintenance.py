"""The worker's maintenance loops: one step each, run by the worker's guard until the run is closed.

* lease     renews the leases of owned deliveries every ``lease_s / 3``, after handing back any owned
            delivery that nothing runs or records (the invariant of ``inflight.py``);
* reclaim   takes over deliveries of dead workers once their lease expired, and the deliveries of
            this worker's dead child processes at once (a hand-back wakes it);
* prune     removes consumers of dead workers that own nothing from the groups;
* schedule  promotes due delayed messages, sleeping until the next due time or a wake-up;
* heartbeat refreshes this worker's liveness key (one key with a TTL, nothing broadcast);
* autoscale (with ``--autoscale``) resizes the worker to the backlog (``autoscale.py``);
* flow      reads run-time rate limits and paused queues, renews concurrency slots (``celeriac.flow``);
* beat      (with ``-B``) the periodic scheduler: claims due slots (``celeriac.beat``).

They run until every outcome is recorded (shutdown closes them last: leases must be renewed while
anything is owned).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .._version import __version__
from ..monitor.recorder import process_fields
from .active import active_fields
from .collector import HeapTrimmer
from .connections import redis_connections
from .identity import BEAT_FIELD, heartbeat_stamp

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger(__name__)

_SCHEDULE_MAX_WAIT_S = 5.0  # re-check delayed sets even without a wake-up (a missed pub/sub message)
_PRUNE_INTERVAL_S = 60.0
_AUTOSCALE_TICK_S = 1.0


class Maintenance:
    """The maintenance loops of one worker (see the module docstring)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._trimmer = HeapTrimmer()

    def steps(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """``(name, one step)`` of each loop this worker runs."""
        return [
            ("lease", self.lease_once),
            ("prune", self.prune_once),
            ("reclaim", self.reclaim_once),
            ("schedule", self.schedule_once),
            ("heartbeat", self.heartbeat_once),
            *([("autoscale", self.autoscale_once)] if self.worker.autoscale else []),
            *([("flow", self.flow_once)] if self.worker.flow is not None else []),
            *([("beat", self.beat_once)] if self.worker.beat is not None else []),
        ]

    # ---- leases and recovery ---------------------------------------------------------------------
    async def lease_once(self) -> None:
        w = self.worker
        await asyncio.sleep(w.conf.lease_s / 3)
        inflight = w.inflight
        orphans = inflight.orphans()
        if orphans:  # the invariant (inflight.py): whatever bug made them, they go back, not renewed
            w.hand_back_orphans(orphans, "no slot runs it and no outcome of it is being recorded")
        owned = inflight.owned()
        if not owned:
            return
        lost = await w.broker.extend(w.worker_id, owned)
        for d in lost:
            key = (d.queue, d.entry_id)
            # A settle racing this renewal may have acked the delivery first: not a lost lease. It is
            # either still on its way (the delivery stays owned until the reply), or done.
            if not inflight.owns(key) or inflight.flushing(key):
                continue
            logger.warning("lease lost on %s %s (this worker was too slow or cut off)", d.queue, d.entry_id)

    async def reclaim_once(self) -> None:
        w = self.worker
        for queue in w.queues:
            free = w.free_slots()
            if free <= 0 or w.stopping:
                break
            deliveries, dead = await w.broker.reclaim(
                queue, w.worker_id, free, w.lease_ms, w.conf.max_deliveries
            )
            if dead:
                w.stats.dead_lettered += dead
                logger.error("%d message(s) of %s dead-lettered after max_deliveries", dead, queue)
                if w.workflow_hook is not None:  # a chord member among them fails its chord
                    await w.workflow_hook.dead_lettered(queue, dead)
            for d in deliveries:
                w.stats.reclaimed += 1
                logger.warning(
                    "reclaimed %s %s (delivery %d) from an expired lease", queue, d.entry_id, d.deliveries
                )
                w.start_delivery(d)
        wake = w.run_state.reclaim_wake
        try:  # a hand-back from a dead child wakes this loop: its task runs again at once
            await asyncio.wait_for(wake.wait(), min(2.0, w.conf.lease_s / 5))
        except asyncio.TimeoutError:
            pass
        wake.clear()

    async def prune_once(self) -> None:
        w = self.worker
        await asyncio.sleep(_PRUNE_INTERVAL_S)
        idle_ms = int(max(60.0, 10 * w.conf.lease_s) * 1000)
        for queue in w.queues:
            await w.broker.prune_consumers(queue, idle_ms, keep=w.worker_id)

    # ---- delayed messages --------------------------------------------------------------------------
    async def flow_once(self) -> None:
        w = self.worker
        assert w.flow is not None
        await w.flow.run_refresh(w.queues, lambda: w.run_state.closed.is_set())

    async def beat_once(self) -> None:
        """One pass of the embedded scheduler (its Redis calls are synchronous: in a thread), then
        sleep until its next due claim, or until the worker closes."""
        w = self.worker
        assert w.beat is not None
        wait_s = await asyncio.to_thread(w.beat.tick)
        try:
            await asyncio.wait_for(w.run_state.closed.wait(), wait_s)
        except asyncio.TimeoutError:
            pass

    async def schedule_once(self) -> None:
        w = self.worker
        waits = [await w.broker.promote(q) for q in w.queues]
        wait_s = min([s for s in waits if s is not None] + [_SCHEDULE_MAX_WAIT_S])
        closed_event = w.run_state.closed
        if wait_s <= 0 or closed_event.is_set():
            return
        # Shutdown sets an event rather than relying on cancellation alone: a cancellation that lands as
        # the pub/sub read times out can be absorbed by the client, and the loop would wait 5 s more.
        wake = asyncio.ensure_future(w.broker.wait_wake(w.queues, wait_s))
        closed = asyncio.ensure_future(closed_event.wait())
        try:
            await asyncio.wait({wake, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not wake.done():
                wake.cancel()
        if wake.done() and not wake.cancelled():
            wake.result()  # a connection error goes to the guard's backoff

    # ---- liveness ----------------------------------------------------------------------------------
    async def heartbeat_once(self) -> None:
        await self.publish_heartbeat()
        w = self.worker
        self._trimmer.rest(w.stats.processed, w.inflight.running)  # memory back to the system
        await asyncio.sleep(w.conf.worker_ttl_s / 3)

    async def publish_heartbeat(self) -> None:
        w = self.worker
        fields = {
            "hostname": socket.gethostname(),
            "pid": str(os.getpid()),
            "queues": ",".join(w.queues),
            "pool": w.pool_name,
            "concurrency": str(w.concurrency),
            **({"autoscale": f"{w.autoscale.max},{w.autoscale.min}"} if w.autoscale else {}),
            "running": str(w.inflight.running),
            "processed": str(w.stats.processed),
            "failed": str(w.stats.failed),
            "started_at": f"{w.stats.started_at:.0f}",
            "version": __version__,
            BEAT_FIELD: heartbeat_stamp(),  # changes at every heartbeat: tells a live holder of an id
            **w.pool.info(),  # children/lost/recycled, or threads/abandoned
            **process_fields(),
            **active_fields(w.app, w.worker_id, w.inflight.running_slots()),
            **(
                w.recorder.heartbeat_fields(w.inflight.running_deliveries())
                if w.recorder
                else {"events": "off"}
            ),
            **redis_connections(w.broker),
        }
        await w.broker.heartbeat(w.worker_id, fields, w.conf.worker_ttl_s, w.queues)

    # ---- autoscale ---------------------------------------------------------------------------------
    async def autoscale_once(self) -> None:
        """Grow when every slot is busy and messages wait; shrink after an idle window (autoscale.py)."""
        w = self.worker
        scaler = w.autoscaler
        assert scaler is not None, "only with autoscale"
        wake = w.run_state.autoscale_wake
        try:
            tick_s = min(_AUTOSCALE_TICK_S, scaler.bounds.idle_s / 2)
            await asyncio.wait_for(wake.wait(), tick_s)
        except asyncio.TimeoutError:
            pass
        wake.clear()
        if w.stopping:
            return
        backlog = None
        if scaler.wants_backlog(w.concurrency, w.inflight.running):
            stats = [await asyncio.to_thread(w.broker.stats, q) for q in w.queues]
            backlog = sum(s.ready for s in stats)
        size = scaler.next_size(w.concurrency, w.inflight.running, backlog)
        if size != w.concurrency:
            logger.info("autoscale: %d -> %d slots (%d running)", w.concurrency, size, w.inflight.running)
            w.concurrency = size
            w.pool.resize(size)
            w.recheck_slots()  # a fetch loop waiting for a free slot re-checks
