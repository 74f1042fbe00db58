"""The worker's side of revoke (``celeriac.control``): drop revoked tasks, terminate running ones.

The worker's broker keeps a mirror of the revocation stream (``broker/revoked.py``), brought up to
date with every fetch batch (same round trip, after the fetch) and by the control loop here (a
blocking read on a connection of its own). So:

* a task whose id is revoked when its delivery is taken never starts: REVOKED is recorded
  (:meth:`Revoking.drop`, one set lookup per task);
* a revoke with ``terminate=True`` of a task running here stops it (:meth:`Revoking.terminate_pending`):
  the pool's own way when it has one (``terminate(task_id, signal)``: a thread gets TaskRevokedError,
  a child process the signal), otherwise by cancelling the run (coroutines: CancelledError at their
  next await; gevent: the greenlet is killed);
* a revoked workflow member fails its workflow (:func:`celeriac.control.member_failed`, off the loop).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..broker.base import Delivery, task_id_of
from ..broker.revoked import Revocation
from ..exceptions import TaskRevokedError
from .inflight import key_of

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..broker.base import Broker
    from .executor import Executor, Job, Outcome
    from .limits import TimeLimits

logger = logging.getLogger("celeriac.worker")

#: the control loop's longest blocking read of the revocation stream
_BLOCK_MS = 5_000

Key = tuple[str, str]
#: a running delivery: (key, delivery, the worker's task running it)
Run = tuple[Key, Delivery, "asyncio.Future[Any]"]


class Revoking:
    """Revocations as one worker applies them.

    Args:
        app: the worker's app (settings, and the workflow of revoked members).
        broker: the worker's broker (its revocation mirror and reads).
        executor: turns a revoked job into its REVOKED outcome.
        pool: where tasks run; its ``terminate(task_id, signal)``, when it has one, stops a run.
    """

    def __init__(self, app: Celeriac, broker: Broker, executor: Executor, pool: Any) -> None:
        self.app = app
        self.broker = broker
        self.executor = executor
        self.pool = pool
        self.mirror = broker.revocations
        #: the revoked ids (the mirror's dict, the same object for the worker's life): empty while
        #: nothing is revoked, and then a task pays one truth test
        self.ids = self.mirror.ids
        self.mirror.ttl_ms = int(app.conf.revoke_expires_s * 1000)
        #: runs a terminate is stopping, by delivery key
        self.terminating: dict[Key, Revocation] = {}

    # ---- before a task starts --------------------------------------------------------------------
    def drop(self, job: Job) -> Outcome | None:
        """The REVOKED outcome of ``job`` when its task id is revoked (it must not run), else None."""
        if job.message.id not in self.ids:
            return None
        self.member_failed(job)
        return self.executor.revoked(job)

    # ---- running ---------------------------------------------------------------------------------
    # The worker runs a job as ``check_acked(job)``, then ``executor.run(...)``; a CancelledError from
    # either goes to :meth:`cancelled`, and :meth:`finished` has the last word when a terminate is
    # pending. Written as three calls around the worker's own await (not a coroutine of its own here)
    # because they run for every task.
    def check_acked(self, job: Job) -> None:
        """Raise CancelledError when ``job``'s task was revoked while its ack was sent (at-most-once)."""
        # the id first: acks_late resolves options
        if job.message.id in self.ids and not job.acks_late:
            raise asyncio.CancelledError

    def cancelled(self, d: Delivery, job: Job, cancel: asyncio.CancelledError) -> Outcome:
        """The outcome of a run of delivery ``d`` cancelled (``cancel``) by a terminate. A shutdown's
        cancellation is raised again (the worker hands the delivery back)."""
        key = key_of(d)
        if key not in self.terminating and job.message.id not in self.mirror:
            raise cancel
        outcome = self.executor.finish(job, exc=TaskRevokedError("cancelled"))
        self.terminating.setdefault(key, Revocation(job.message.id, 0))
        return outcome

    def finished(self, d: Delivery, job: Job, outcome: Outcome) -> Outcome:
        """The outcome of a run (of delivery ``d``) that a terminate was stopping: REVOKED unless the
        task finished before the terminate landed. Call it only while :attr:`terminating` is not empty."""
        if (key := key_of(d)) in self.terminating:
            del self.terminating[key]
            if outcome.exc is not None:
                self.member_failed(job)
                return self.executor.revoked(job, "terminated while running (revoke terminate=True)")
        return outcome

    async def run(self, d: Delivery, job: Job, limits: TimeLimits) -> Outcome:
        """Run ``job`` (of delivery ``d``) through the pool; a run stopped by a terminate ends REVOKED
        (a task that finished before the terminate landed keeps its outcome). The worker inlines this."""
        try:
            if self.ids:
                self.check_acked(job)
            outcome = await self.executor.run(job, self.pool, limits)
        except asyncio.CancelledError as cancel:
            outcome = self.cancelled(d, job, cancel)
        if self.terminating:
            outcome = self.finished(d, job, outcome)
        return outcome

    def terminate_pending(self, running: Callable[[], Iterable[Run]]) -> None:
        """Stop the running tasks revoked with ``terminate`` since the last call. ``running()`` lists
        the worker's runs (asked only when there is something to terminate)."""
        if not self.mirror.terminations:
            return
        requests, self.mirror.terminations = self.mirror.terminations, []
        wanted = {r.task_id: r for r in requests}
        # the ids are read off the running messages: a terminate is rare, and an index of running
        # task ids would cost every task
        for key, d, run in list(running()):
            task_id = task_id_of(d.data)
            revocation = wanted.get(task_id)
            if revocation is None or key in self.terminating:
                continue
            self.terminating[key] = revocation
            logger.warning("task %s revoked with terminate: stopping it (%s)", task_id, revocation.signal)
            terminate: Callable[[str, str], bool] | None = getattr(self.pool, "terminate", None)
            if terminate is not None and terminate(task_id, revocation.signal):
                continue  # the pool stops it its own way; the run ends with TaskRevokedError
            run.cancel("celeriac revoke terminate")

    # ---- the control loop ------------------------------------------------------------------------
    async def control_once(self, running: Callable[[], Iterable[Run]]) -> None:
        """One step of the control loop: follow the revocation stream (blocking on its own
        connection: keeps the mirror fresh while no fetch happens), forget revocations past
        ``revoke_expires_s``, and terminate what was revoked with ``terminate``."""
        await self.broker.sync_revoked(block_ms=_BLOCK_MS)
        self.mirror.expire(int(time.time() * 1000))
        self.terminate_pending(running)

    # ---- workflows -------------------------------------------------------------------------------
    def member_failed(self, job: Job) -> None:
        """A revoked workflow member fails its workflow (off the loop: it writes to Redis)."""
        # imported here: celeriac.control is the client side's module, needed only once a task is revoked
        from ..control import is_workflow_member, member_failed

        if not is_workflow_member(job.message):
            return
        exc = TaskRevokedError(f"task {job.message.id} revoked")
        call = functools.partial(member_failed, self.app, job.message, exc, job.request.queue)
        future = asyncio.get_running_loop().run_in_executor(None, call)
        future.add_done_callback(_log_member_failed)


def _log_member_failed(future: asyncio.Future[None]) -> None:
    exc = None if future.cancelled() else future.exception()
    if exc is not None:
        logger.error("a revoked workflow member could not fail its workflow: %s", exc)


__all__ = ["Revoking"]
