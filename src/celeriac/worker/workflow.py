"""The worker's workflow hook (see :mod:`celeriac.workflow`): a chord body gets the header's values
before it runs; after a workflow task's final outcome, what follows it is carried out in Redis
before the outcome is recorded (so before the ack: a crash in between runs the task again, and its
successors, deduplicated by id, are not sent twice).

Plans of tasks that finish while a flush is on its way are flushed together (group commit): one
round trip, and one ``chord_part.lua`` call per chord for all of its members in the batch. When no
flush is on its way, the task's own coroutine flushes its plan at once (a chain on an idle worker
waits for no extra task or loop turn); plans that arrive meanwhile are flushed after it.

The workflow modules (``celeriac.workflow.outcome``, ``.plan``, ``.redis``, ``.build``) load when a
message first carries workflow extras, not when the worker starts: a worker that runs no workflow
does not hold them (about 0.3 MiB; benchmarks/README.md, "idle worker RSS").
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from .._registry import BUILTIN_TASKS
from ..exceptions import DecodeError, WorkerLostError
from ..states import TaskState

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..execution import Job, Outcome
    from ..message import Message
    from ..workflow.plan import Plan
    from ..workflow.redis import RedisWorkflowStore

_LOST = f"{WorkerLostError.__module__}.{WorkerLostError.__qualname__}"


class WorkflowHook:
    """One per worker, on the broker's Redis."""

    def __init__(self, app: Celeriac, url: str, prefix: str, aio: Any = None) -> None:
        self.app = app
        self._store_args = (url, prefix, aio)
        self._pending: list[tuple[Plan, asyncio.Future[None]]] = []
        self._flushing = False
        self._drainer: asyncio.Task[None] | None = None  # referenced: a running task is not collected

    @functools.cached_property
    def store(self) -> RedisWorkflowStore:
        """The plans' store on the broker's Redis, made when a workflow first needs it."""
        from ..workflow.redis import RedisWorkflowStore  # lazy: see the module's docstring

        return RedisWorkflowStore(self.app, *self._store_args)

    async def before_run(self, job: Job) -> Job:
        """A chord body's job with the header's values as its first argument (others unchanged)."""
        from ..workflow.outcome import chord_values, with_values  # lazy: see the module's docstring
        from ..workflow.plan import workflow_of

        w = workflow_of(job.message)
        if w is None or not isinstance(w.get("r"), str):
            return job
        size, blob = await self.store.chord_blob(job.request.queue, w["r"])
        return with_values(job, chord_values(self.app, w["r"], size, blob))

    async def after(self, message: Message, queue: str, outcome: Outcome) -> None:
        """Carry out what follows ``outcome`` (raises when Redis refused: the caller hands the
        delivery back, so the task runs again and dispatches again)."""
        from ..workflow.outcome import after_outcome  # lazy: see the module's docstring

        plan = after_outcome(self.app, message, queue, outcome)
        if plan:
            await self._commit(plan)

    async def dead_lettered(self, queue: str, count: int) -> None:
        """``count`` messages of ``queue`` were just dead-lettered by a reclaim (delivered
        ``max_deliveries`` times without an outcome): the workflow members among the newest dead
        letters fail what depends on them (idempotent: a dead letter seen twice changes nothing)."""
        from ..workflow.outcome import failure_plan  # lazy: see the module's docstring
        from ..workflow.plan import Plan

        plan = Plan()
        for data, reason in await self.store.dead_letters(queue, count):
            try:
                message = self.app.codec.decode(data)
            except DecodeError:
                continue
            plan.extend(failure_plan(self.app, message, queue, TaskState.FAILURE, _LOST, reason))
        if plan:
            await self._commit(plan)

    async def _commit(self, plan: Plan) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((plan, future))
        if not self._flushing:  # the first plan is flushed at once, here; later ones join the next
            self._flushing = True
            try:
                batch, self._pending = self._pending, []
                await self._flush(batch)
            finally:
                if self._pending:  # arrived during this flush: their batch is flushed next
                    self._drainer = loop.create_task(self._drain())
                else:
                    self._flushing = False
        await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._flush(batch)
        finally:
            self._flushing = False

    async def _flush(self, batch: list[tuple[Plan, asyncio.Future[None]]]) -> None:
        from ..workflow.outcome import chord_failed  # loaded by the plan's maker already
        from ..workflow.plan import Plan

        merged = Plan()
        for plan, _ in batch:
            merged.extend(plan)
        try:
            while merged:  # a chord that failed has a follow-up: one more round trip
                failed = await self.store.apply(merged)
                merged = Plan()
                for queue, chord_id, body, failure in failed:
                    merged.extend(chord_failed(self.app, queue, chord_id, body, failure))
        except Exception as exc:  # each waiter's task is handed back and runs again
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def close(self) -> None:
        if "store" in self.__dict__:  # made (functools.cached_property): a workflow ran
            await self.store.close()


def user_tasks(app: Celeriac) -> int:
    """How many tasks the app registers besides the built-in workflow ones (for log lines)."""
    return sum(1 for name in app.tasks if name not in BUILTIN_TASKS)


def workflow_hook(app: Celeriac, broker: Any) -> WorkflowHook | None:
    """The hook of a worker on ``broker``; None for a broker without a Redis URL (the memory broker
    runs workflows only eagerly)."""
    url = getattr(broker, "url", None)
    if not isinstance(url, str):
        return None
    shared = getattr(broker, "shared_async", None)  # one pool per worker: its broker's
    return WorkflowHook(app, url, app.conf.key_prefix, shared() if shared is not None else None)
