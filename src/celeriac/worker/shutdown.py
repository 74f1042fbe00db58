"""The worker's shutdown sequence, in order (warm: after the first signal; cold: the second).

1. stop fetching, and hand back anything fetched but not started (re-queued fresh);
2. warm: let running tasks finish within ``worker_shutdown_grace_s`` (or until a cold stop);
3. cancel the runs still going and take their deliveries over;
4. record every outcome (the lease loop keeps renewing meanwhile);
5. hand the interrupted deliveries back (reclaimable at once, counting a delivery), and any owned
   delivery that nothing runs or records (the invariant of ``inflight.py``);
6. end the maintenance loops, leave the consumer group, close the pool, the broker and the backend.

No task is lost either way: a handed-back message runs again on another worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import BrokerError

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger(__name__)

_CANCEL_WAIT_S = 5.0


async def shut_down(
    w: Worker, fetcher: asyncio.Task[None], settler: asyncio.Task[None], maintenance: list[asyncio.Task[None]]
) -> None:
    """Stop ``w`` in the order of the module docstring; the tasks are its running loops."""
    state = w.run_state
    state.stop.set()
    state.slot_free.set()  # a fetch loop waiting for a free slot re-checks its flag and ends
    await end_tasks([fetcher], wait_s=0.05)  # one blocked in a read is cancelled
    try:
        await _release_untaken(w)
    except BrokerError as exc:
        logger.warning("could not hand back unstarted messages (%s): they return after the lease", exc)
    await _wait_running(w)
    runs = w.inflight.interrupt()
    interrupted = [d for d, _ in runs]
    await end_tasks([run for _, run in runs], wait_s=0.0)
    # record every outcome before anything else stops (the lease loop keeps them owned meanwhile)
    w.settler.close()
    try:
        await asyncio.wait_for(settler, timeout=w.conf.lease_s)
    except asyncio.TimeoutError:
        logger.warning("outcomes not recorded in time (Redis down?): those tasks return after the lease")
    await w.handed_back(timeout_s=w.conf.lease_s)
    orphans = w.inflight.orphans()
    if orphans:  # the invariant holds at exit too: nothing owned leaves with this worker
        logger.error("%d delivery(ies) owned but neither run nor recorded: handing them back", len(orphans))
        for d in orphans:
            w.inflight.drop(d)
        interrupted += orphans
    try:
        if interrupted:
            n = await w.broker.release(w.worker_id, interrupted, started=True)
            logger.warning("handed %d interrupted task(s) back to the queue", n)
    except BrokerError as exc:
        logger.warning("shutdown could not reach Redis (%s): unacked tasks return after the lease", exc)
    state.closed.set()
    await end_tasks(maintenance, wait_s=0.0)
    try:
        await w.broker.unregister(w.worker_id)
        for queue in w.queues:  # this run's consumer owns nothing any more: leave the group
            await w.broker.prune_consumers(queue, 0, only=w.worker_id)
    except BrokerError as exc:
        logger.debug("could not unregister (%s): the registry entry expires, the consumer is pruned", exc)
    await w.pool.close(cold=state.cold.is_set())
    if w.recorder is not None:
        await w.recorder.close()
    if w.workflow_hook is not None:
        await w.workflow_hook.close()
    if w.flow is not None:
        await w.flow.close()
    await w.broker.close()
    # the worker's own broker (Broker.for_worker): its start-up checks, stats and server checks ran on
    # the synchronous client, whose connections are closed here rather than left to the collector
    w.broker.close_sync()
    if w.backend is not None:
        await w.backend.close()
    logger.info("worker %s stopped (%d processed)", w.worker_id, w.stats.processed)


async def _wait_running(w: Worker) -> None:
    """Warm shutdown: let running tasks finish within the grace period, or until a cold stop."""
    running: set[asyncio.Future[Any]] = set(w.inflight.runs())
    cold = w.run_state.cold
    if not running or cold.is_set():
        return
    grace_s = w.conf.worker_shutdown_grace_s
    logger.info("waiting up to %.0fs for %d running task(s)", grace_s, len(running))
    cold_wait = asyncio.create_task(cold.wait())
    deadline = time.monotonic() + grace_s
    while running and not cold_wait.done() and time.monotonic() < deadline:
        _done, running = await asyncio.wait(
            {*running, cold_wait},
            timeout=deadline - time.monotonic(),
            return_when=asyncio.FIRST_COMPLETED,
        )
        running.discard(cold_wait)
    cold_wait.cancel()


async def _release_untaken(w: Worker) -> None:
    """Hand back messages taken by a fetch that was cut short, which no task has started."""
    for queue in w.queues:
        pending = await w.broker.pending(queue, w.worker_id)
        untaken = [p for p in pending if not w.inflight.owns((p.queue, p.entry_id))]
        if untaken:
            await w.broker.release(w.worker_id, untaken, started=False)


async def end_tasks(tasks: Sequence[asyncio.Future[None]], wait_s: float) -> None:
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
            name = task.get_name() if isinstance(task, asyncio.Task) else "a task's run"
            logger.warning("%s did not stop when cancelled; abandoning it", name)
