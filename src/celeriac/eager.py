"""Eager mode: the sync driver of the execution semantics (``task_always_eager``, ``Task.apply``).

The message still makes the round trip through the codec (so what cannot travel fails here as it would
on a worker), then :class:`~celeriac.execution.Execution` decides, exactly as for a worker's pools.
The task runs in the caller's thread; a coroutine task runs in a fresh event loop (in a helper thread
when the caller's thread already runs one).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from .context import _current
from .execution import Execution, Job, Outcome
from .record import ResultRecord
from .result import EagerResult
from .states import TaskState

if TYPE_CHECKING:
    from .app import Celeriac
    from .message import Message


def run_job(execution: Execution, job: Job) -> Outcome:
    """Call the task inline in this thread and decide the outcome (in a run span when traced)."""
    tracing = execution.app.tracing
    if tracing is not None:
        with tracing.run(job.message, job.request.queue) as span:
            outcome = _run_job(execution, job)
            tracing.finish(span, outcome.kind, outcome.exc)
            return outcome
    return _run_job(execution, job)


def _run_job(execution: Execution, job: Job) -> Outcome:
    started = time.perf_counter()
    token = _current.set(job.request)
    try:
        call = job.task.bound(job.message.args, job.message.kwargs)
        value = run_coroutine_blocking(call()) if job.task.is_async else call()
    except Exception as exc:
        return execution.finish(job, exc=exc, runtime_s=time.perf_counter() - started)
    finally:
        _current.reset(token)
    return execution.finish(job, value=value, runtime_s=time.perf_counter() - started)


def run_message(app: Celeriac, data: bytes, message: Message) -> EagerResult[Any]:
    """Run an encoded message inline; retries run at once, as in Celery."""
    execution = Execution(app)
    while True:
        prepared = execution.prepare(data, eager=True)
        out = prepared if isinstance(prepared, Outcome) else run_job(execution, prepared)
        if out.kind != "retry":
            break
        data = out.retry_data
    if out.exc is not None and out.state is not None and app.conf.task_eager_propagates:
        raise out.exc
    if out.record is None and out.kind == "ack" and out.state is None:  # the task raised Ignore
        return EagerResult(ResultRecord(message.id, TaskState.IGNORED), app)
    return EagerResult(out.record or ResultRecord(message.id, TaskState.SUCCESS, out.value), app)


def run_coroutine_blocking(coro: Any, name: str = "celeriac-eager") -> Any:
    """Run a coroutine to completion from sync code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["exc"] = exc

    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join()
    if "exc" in box:
        raise box["exc"]
    return box.get("value")
