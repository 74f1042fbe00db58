"""The worker's driver of the execution semantics: run a prepared job through a pool, asyncio side.

What a message means (decode, look up, expiry, retry, ack, dead letter) is
:mod:`celeriac.execution`'s, shared with eager mode; this adds only the call through a pool under
time limits. Pools decide *where* the function runs and how limits are enforced there
(``pools.Pool``); whatever the pool, a value or an exception comes back and
:meth:`~celeriac.execution.Execution.finish` decides.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable, Sequence
from time import perf_counter  # a global read per call, not a module attribute
from typing import TYPE_CHECKING, Any

from ..context import _current
from ..exceptions import WorkerShutdown
from ..execution import REMOTE_TRACEBACK_ATTR, Execution, Job, Outcome, format_traceback
from .limits import NO_LIMITS, TimeLimits

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..task import Task
    from .pools import Pool, ThreadBackedPool

__all__ = [
    "REMOTE_TRACEBACK_ATTR",
    "Executor",
    "Job",
    "Outcome",
    "bound_call",
    "format_traceback",
]


def bound_call(task: Task[Any, Any], args: Sequence[Any], kwargs: Any) -> Callable[[], Any]:
    """The task's function with its arguments (:meth:`Task.bound`), ready to call."""
    return task.bound(args, kwargs)


class Executor(Execution):
    """Executes messages of one app in a worker: :class:`~celeriac.execution.Execution` plus the
    asyncio call through a pool."""

    def __init__(self, app: Celeriac) -> None:
        super().__init__(app)
        self.cache_options()  # one executor per worker: each task's options resolved once

    def concluded(
        self, job: Job, started: float, value: Any = None, exc: Exception | WorkerShutdown | None = None
    ) -> Outcome:
        """The outcome of a run begun at ``started`` (``perf_counter``) that returned ``value`` or
        raised ``exc`` (an ``Exception``, or ``WorkerShutdown``): what :meth:`run` decides, and what
        the worker decides for a sync call it started without a coroutine (:meth:`start_call`)."""
        runtime_s = perf_counter() - started
        if exc is None:
            return self.finish(job, value=value, runtime_s=runtime_s)
        if isinstance(exc, WorkerShutdown):
            # the task asks this worker to stop: its delivery is handed back (it runs again elsewhere,
            # and max_deliveries bounds a task that always asks), then the worker stops warm
            return Outcome(
                "release",
                job.message.id,
                job.message.task,
                reason="the task raised WorkerShutdown: this worker stops",
                exc=exc,
                runtime_s=runtime_s,
            )
        return self.finish(job, exc=exc, runtime_s=runtime_s)

    def start_call(
        self,
        job: Job,
        pool: ThreadBackedPool,
        limits: TimeLimits,
        done: asyncio.Future[None],
        then: Callable[[Any, BaseException | None], None],
    ) -> None:
        """Start a sync task's call in ``pool``'s threads with nobody awaiting it: ``then(value,
        error)`` is called on the loop when it returns (unless ``done`` is done by then: a shutdown
        cancelled it), and :meth:`concluded` decides the outcome. What :meth:`run` does for such a
        task, without a coroutine and a future per run (the request is carried in a copy of the
        context, as there). Only without tracing (its span is entered around :meth:`run`'s await)."""
        message = job.message
        ctx = contextvars.copy_context()
        ctx.run(_current.set, job.request)
        call = job.task.bound_in(ctx, message.args, message.kwargs)
        pool.submit(call, done, then, limits, job.label if limits else "task", message.id)

    async def run(self, job: Job, pool: Pool, limits: TimeLimits = NO_LIMITS) -> Outcome:
        """Call the task through ``pool`` under ``limits`` and decide the outcome.

        The request is set in this task's context first: pools that run code in this process carry
        it along (coroutines here, sync functions in threads with a copy of the context).
        """
        # OpenTelemetry (celeriac.tracing): a CONSUMER span, current while the task runs; when tracing
        # is off this costs one attribute test
        tracing = self.app.tracing
        span_scope = tracing.run(job.message, job.request.queue) if tracing is not None else None
        span = span_scope.__enter__() if span_scope is not None else None
        if span is not None:
            assert tracing is not None
            job.request.traceparent = tracing.traceparent()  # for a child process (process pool)
        started = perf_counter()
        token = _current.set(job.request)
        try:
            value = await pool.run(job, limits)
        except (Exception, WorkerShutdown) as exc:  # CancelledError is a BaseException: it propagates
            outcome = self.concluded(job, started, exc=exc)
        except BaseException:
            if span_scope is not None:
                span_scope.__exit__(*sys.exc_info())
            raise
        else:  # concluded()'s first case, inlined: the hot path of every run
            outcome = self.finish(job, value=value, runtime_s=perf_counter() - started)
        finally:
            _current.reset(token)
        if span_scope is not None:
            assert tracing is not None and span is not None
            tracing.finish(span, outcome.kind, outcome.exc)
            span_scope.__exit__(None, None, None)
        return outcome
