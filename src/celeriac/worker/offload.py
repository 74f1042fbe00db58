"""What the pools that run coroutines on the loop and sync functions off it (threads, greenlets) share.

* :class:`OffloadingPool` the dispatch: a coroutine runs on the loop (under its limits), a sync
  function runs elsewhere with a copy of the context (``self.request``) through ``run_sync``;
* :class:`CompletionBatch` the batched hand-back of finished calls to the loop, and :func:`resolve`,
  its last step (the gevent pool hands back its own way, then calls it too).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeAlias

from .limits import NO_LIMITS, TimeLimits, run_coroutine

if TYPE_CHECKING:
    from .executor import Job
    from .slotgate import QueuedWait

logger = logging.getLogger(__name__)

__all__ = ["Completion", "CompletionBatch", "OffloadingPool", "Then", "resolve"]


class CompletionBatch:
    """Finished calls handed back to the loop in batches, for pools that run calls off the loop.

    While a hand-back is pending on the loop, further completions join it instead of waking the loop
    again: one ``call_soon_threadsafe`` (a write to the loop's self-pipe) per batch, not per call.

    Args:
        lock: guards the batch (a ``threading.Lock`` when completions come from threads; a
            ``contextlib.nullcontext()`` for greenlets, which share the loop's thread).
    """

    __slots__ = ("_done", "_lock", "_pending", "loop")

    def __init__(self, lock: AbstractContextManager[Any]) -> None:
        self._lock = lock
        self._done: list[Completion] = []
        self._pending = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def add(self, future: asyncio.Future[Any], value: Any, error: BaseException | None) -> bool:
        """Hand a result (or ``error``) back to ``future``'s awaiter; False when the loop is gone."""
        with self._lock:
            wake = self.add_locked(future, value, error, None)
        return self.wake() if wake else True

    def add_locked(
        self, future: asyncio.Future[Any], value: Any, error: BaseException | None, then: Then | None
    ) -> bool:
        """:meth:`add` for a caller that holds the lock already: True when the caller must then call
        :meth:`wake` (after releasing the lock). With ``then``, nobody awaits ``future``: ``then(value,
        error)`` is called instead (it must complete ``future``), see :func:`resolve`."""
        self._done.append((future, value, error, then))
        wake = not self._pending
        self._pending = True
        return wake

    def wake(self) -> bool:
        """Have the loop collect the batch; False when the loop is gone."""
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(self._hand_back)  # wakes the loop's selector
        except RuntimeError:  # the loop is closed: the worker is gone, nobody awaits this
            return False
        return True

    def _hand_back(self) -> None:
        with self._lock:
            done, self._done = self._done, []
            self._pending = False
        resolve(done)


#: what a call that nobody awaits is handed back to: ``then(value, error)``, on the loop
Then: TypeAlias = Callable[[Any, BaseException | None], None]
#: a finished call: its future, its value or exception, and its ``then`` (None: a coroutine awaits it)
Completion: TypeAlias = tuple["asyncio.Future[Any]", Any, BaseException | None, Then | None]


def resolve(done: list[Completion]) -> None:
    """Give each awaiter of a batch of finished calls its value or exception (on the loop); a call
    nobody awaits (``then``, the worker's sync calls started without a coroutine) is handed to its
    ``then``."""
    for future, value, error, then in done:
        if future.done():
            continue  # cancelled (shutdown) or failed by its hard limit
        if then is not None:
            try:
                then(value, error)
            except Exception:  # a bug there must not strand the rest of the batch (their runs never end)
                logger.exception("a finished call could not be handed back")
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


class OffloadingPool:
    """The dispatch shared by the pools that run coroutines on the loop and sync functions elsewhere
    (threads, greenlets): subclasses provide :meth:`run_sync`."""

    async def run(self, job: Job, limits: TimeLimits) -> Any:
        task, message = job.task, job.message
        if task.is_async:
            if limits is NO_LIMITS or not limits:
                return await task.run_with(message.args, message.kwargs)  # the hot path: no extra frame
            return await run_coroutine(task.run_with(message.args, message.kwargs), limits, job.label)
        # a copy of the context carries the request into the thread (greenlet)
        call = task.bound_in(contextvars.copy_context(), message.args, message.kwargs)
        label = job.label if limits else "task"
        admission = job.admission
        if admission is not None:  # a prefetched run waiting for a slot in the pool's queue
            return await self.run_queued(call, limits, label, message.id, admission)
        return await self.run_sync(call, limits, label, key=message.id)

    async def run_sync(
        self, fn: Callable[[], Any], limits: TimeLimits = NO_LIMITS, label: str = "task", key: str = ""
    ) -> Any:
        """Run ``fn`` off the loop under ``limits``; return its value or raise its exception. ``key``
        (the task id) lets a revoke with terminate find the call."""
        raise NotImplementedError

    async def run_queued(
        self,
        fn: Callable[[], Any],
        limits: TimeLimits = NO_LIMITS,
        label: str = "task",
        key: str = "",
        admission: QueuedWait | None = None,
    ) -> Any:
        """:meth:`run_sync` for a prefetched run whose call waits for a slot in the pool's own queue
        (``admission``, from ``SlotGate.enqueue``): only pools that queue calls themselves
        (``queues_calls``: the threads pool) are handed such runs. Raises
        :class:`~celeriac.worker.slotgate.NotStarted` when the call was withdrawn at its start
        deadline, before a thread took it."""
        raise NotImplementedError
