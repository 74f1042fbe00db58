"""Runs ONE message, for every pool and for eager/test mode: decode, look up, check, call, decide.

The executor turns a message into an :class:`Outcome`: what to store as the result, and what the
broker should do with the delivery (ack, park a retry, dead-letter with a reason, or hand it back to
run again). It does no I/O of its own: the worker (or eager mode) records outcomes. Pools only decide
*where* the function runs and how time limits are enforced there (:class:`TaskRunner`); whatever the
pool, a value or an exception comes back here and :meth:`Executor.finish` decides.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..context import Request, _current
from ..exceptions import (
    DecodeError,
    MaxRetriesExceededError,
    Reject,
    Retry,
    SerializationError,
    TaskExpiredError,
    WorkerLostError,
)
from ..message import Message
from ..results.base import ResultRecord, StoreResult, encode_record
from ..retry import backoff_delay_s
from ..states import TaskState
from .limits import NO_LIMITS, TimeLimits

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..task import Task

_MAX_TRACEBACK_CHARS = 16_000


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)  # not frozen: a frozen init costs ~0.1 us per field, per message
class Outcome:
    """What happened to one message, and what must be recorded.

    ``kind`` is the broker action: ``ack`` (done), ``retry`` (done, park ``retry_data`` for later),
    ``dead`` (done, dead-letter the message with ``reason``), ``release`` (not done: the process
    running it died; hand the delivery back so that it runs again). ``store`` is the result to write
    first.
    """

    kind: Literal["ack", "retry", "dead", "release"]
    task_id: str | None = None
    task_name: str | None = None
    state: TaskState | None = None
    store: StoreResult | None = None
    record: ResultRecord | None = None
    retry_data: bytes = b""
    delay_ms: int | None = None
    eta_ms: int | None = None
    reason: str = ""
    exc: BaseException | None = None
    value: Any = None
    runtime_s: float = 0.0


@dataclass(slots=True)  # not frozen: a frozen init costs ~0.1 us per field, per message
class Job:
    """A decoded message whose task is known and whose arguments fit: ready to call."""

    message: Message
    task: Task[Any, Any]
    request: Request
    data: bytes

    @property
    def acks_late(self) -> bool:
        m, t = self.message.acks_late, self.task.acks_late
        return m if m is not None else t if t is not None else self.task.app.conf.task_acks_late


class TaskRunner(Protocol):
    """Where a task's function runs: a pool. Returns the function's value or raises its exception
    (or ``TimeLimitExceeded`` / ``WorkerLostError`` when the pool ended the run)."""

    async def run(self, job: Job, limits: TimeLimits) -> Any: ...


#: set on an exception that crossed a process boundary: its traceback, formatted where it was raised
REMOTE_TRACEBACK_ATTR = "_celeriac_remote_traceback"


def format_traceback(exc: BaseException) -> str:
    remote = getattr(exc, REMOTE_TRACEBACK_ATTR, None)
    if isinstance(remote, str):
        return remote[-_MAX_TRACEBACK_CHARS:]
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-_MAX_TRACEBACK_CHARS:]


def bound_call(task: Task[Any, Any], args: Any, kwargs: Any) -> Callable[[], Any]:
    """The task's function with its arguments (and ``self`` for ``bind=True``), ready to call."""
    fn = task.fn
    if task.bind:
        return lambda: fn(task, *args, **kwargs)
    return lambda: fn(*args, **kwargs)


class Executor:
    """Executes messages of one app.

    Args:
        app: the app whose tasks, settings and result policy apply.
        clock_ms: wall clock in epoch milliseconds (for ``expires``; injectable for tests).
    """

    def __init__(self, app: Celeriac, clock_ms: Callable[[], int] = wall_ms) -> None:
        self.app = app
        self.clock_ms = clock_ms

    # ---- before the call ---------------------------------------------------------------------------
    def prepare(
        self, data: bytes, *, queue: str = "", delivery: int = 1, eager: bool = False
    ) -> Job | Outcome:
        """Decode and check a message. Returns a Job to run, or the Outcome of a message that must not run."""
        try:
            message = self.app.codec.decode(data)
        except DecodeError as exc:
            return Outcome("dead", reason=f"undecodable message: {exc}", exc=exc)
        task = self.app.tasks.get(message.task)
        if task is None:
            missing = self.app.not_registered(message.task)
            return self._failed(message, None, missing, kind="dead", reason=f"unknown task: {missing}")
        if message.expires_ms is not None and self.clock_ms() > message.expires_ms:
            expired = TaskExpiredError(f"task {message.id} expired before it started")
            return self._failed(message, task, expired, kind="ack", state=TaskState.EXPIRED)
        # Arguments are checked only when the call raises TypeError (see finish): binding a signature
        # for every message costs more than running a small task.
        request = Request(
            id=message.id,
            task=message.task,
            args=message.args,
            kwargs=message.kwargs,
            retries=message.retries,
            eta=message.eta_ms / 1000 if message.eta_ms is not None else None,
            expires=message.expires_ms / 1000 if message.expires_ms is not None else None,
            delivery=delivery,
            queue=queue,
            is_eager=eager,
            root_id=message.root_id,
            parent_id=message.parent_id,
        )
        return Job(message, task, request, data)

    # ---- the call ---------------------------------------------------------------------------------
    async def run(self, job: Job, pool: TaskRunner, limits: TimeLimits = NO_LIMITS) -> Outcome:
        """Call the task through ``pool`` under ``limits`` and decide the outcome.

        The request is set in this task's context first: pools that run code in this process carry
        it along (coroutines here, sync functions in threads with a copy of the context).
        """
        started = time.perf_counter()
        token = _current.set(job.request)
        try:
            value = await pool.run(job, limits)
        except Exception as exc:  # CancelledError and WorkerShutdown are BaseExceptions: they propagate
            return self.finish(job, exc=exc, runtime_s=time.perf_counter() - started)
        finally:
            _current.reset(token)
        return self.finish(job, value=value, runtime_s=time.perf_counter() - started)

    def run_eager(self, job: Job) -> Outcome:
        """Call the task inline in this thread (eager/test mode)."""
        started = time.perf_counter()
        token = _current.set(job.request)
        try:
            call = bound_call(job.task, job.message.args, job.message.kwargs)
            value = _run_coroutine_blocking(call()) if job.task.is_async else call()
        except Exception as exc:
            return self.finish(job, exc=exc, runtime_s=time.perf_counter() - started)
        finally:
            _current.reset(token)
        return self.finish(job, value=value, runtime_s=time.perf_counter() - started)

    # ---- after the call --------------------------------------------------------------------------
    def finish(
        self, job: Job, *, value: Any = None, exc: Exception | None = None, runtime_s: float = 0.0
    ) -> Outcome:
        """The outcome of a finished call: success, retry, dead-letter or failure."""
        message, task = job.message, job.task
        if exc is None:
            if self._ignore_result(message, task):
                return Outcome(
                    "ack", message.id, message.task, TaskState.SUCCESS, value=value, runtime_s=runtime_s
                )
            record = ResultRecord(
                message.id, TaskState.SUCCESS, value, date_done_ms=self.clock_ms(), retries=message.retries
            )
            try:
                payload = self.app.codec.encode_result(record, message)
            except SerializationError as ser:
                return self._failed(message, task, ser, kind="ack", runtime_s=runtime_s)
            store = StoreResult(message.id, payload, self._ttl_s(message, task))
            return Outcome(
                "ack",
                message.id,
                message.task,
                TaskState.SUCCESS,
                store,
                record,
                value=value,
                runtime_s=runtime_s,
            )

        if isinstance(exc, TypeError):
            try:
                task.check_arguments(message.args, message.kwargs)
            except TypeError as mismatch:
                return self._failed(
                    message, task, mismatch, kind="dead", reason=f"wrong arguments: {mismatch}"
                )
        if isinstance(exc, WorkerLostError) and job.acks_late:
            # at-least-once: the process died before an outcome existed, so the task runs again
            # (max_deliveries still dead-letters a task that kills every process it runs in)
            return Outcome("release", message.id, message.task, reason=str(exc), exc=exc, runtime_s=runtime_s)
        if isinstance(exc, Reject):
            return self._failed(message, task, exc, kind="dead", reason=f"rejected by the task: {exc.reason}")
        retry = exc if isinstance(exc, Retry) else None
        autoretry = task.autoretry_for and isinstance(exc, task.autoretry_for)
        if retry is None and autoretry and not isinstance(exc, task.dont_autoretry_for):
            retry = Retry(exc=exc, countdown_s=-1.0)
        if retry is None:
            return self._failed(message, task, exc, kind="ack", runtime_s=runtime_s)

        max_retries = getattr(retry, "max_retries", None)
        if max_retries is None:
            max_retries = message.max_retries if message.max_retries is not None else task.max_retries
        cause = retry.exc if isinstance(retry.exc, Exception) else None
        if max_retries is not None and message.retries >= max_retries:
            final: Exception = cause or MaxRetriesExceededError(
                f"{message.task}[{message.id}] exceeded max_retries={max_retries}"
            )
            reason = f"max retries ({max_retries}) exceeded: {type(final).__name__}: {final}"
            return self._failed(message, task, final, kind="dead", reason=reason, runtime_s=runtime_s)

        delay_ms: int | None = None
        eta_ms: int | None = retry.eta_ms
        if eta_ms is None:
            if retry.countdown_s >= 0:
                delay_s = retry.countdown_s
            elif task.retry_backoff:
                factor = 1.0 if task.retry_backoff is True else float(task.retry_backoff)
                delay_s = backoff_delay_s(
                    message.retries, factor_s=factor, max_s=task.retry_backoff_max, jitter=task.retry_jitter
                )
            else:
                delay_s = task.default_retry_delay
            delay_ms = int(delay_s * 1000)
        due_ms = eta_ms if eta_ms is not None else self.clock_ms() + (delay_ms or 0)
        again = replace(message, retries=message.retries + 1, eta_ms=due_ms)
        return Outcome(
            "retry",
            message.id,
            message.task,
            None,
            retry_data=self.app.codec.encode(again),
            delay_ms=delay_ms,
            eta_ms=eta_ms,
            reason=f"retry {again.retries}: {cause!r}" if cause else f"retry {again.retries}",
            exc=cause or retry,
            runtime_s=runtime_s,
        )

    def _ignore_result(self, message: Message, task: Task[Any, Any]) -> bool:
        if message.ignore_result is not None:
            return message.ignore_result
        if task.ignore_result is not None:
            return task.ignore_result
        return self.app.conf.task_ignore_result

    def _ttl_s(self, message: Message, task: Task[Any, Any] | None) -> float:
        if message.result_expires_s is not None:
            return float(message.result_expires_s)
        if task is not None and task.result_expires is not None:
            return float(task.result_expires)
        return self.app.conf.result_expires_s

    def revoked(self, job: Job, reason: str) -> Outcome:
        """The outcome of a job dropped unstarted (expired while waiting behind a limit): REVOKED."""
        from ..exceptions import TaskRevokedError

        return self._failed(
            job.message,
            job.task,
            TaskRevokedError(reason),
            kind="ack",
            reason=reason,
            state=TaskState.REVOKED,
        )

    def _failed(
        self,
        message: Message,
        task: Task[Any, Any] | None,
        exc: BaseException,
        *,
        kind: Literal["ack", "dead"],
        reason: str = "",
        state: TaskState = TaskState.FAILURE,
        runtime_s: float = 0.0,
    ) -> Outcome:
        """A failure outcome; the error is stored unless results are ignored and error storing is off."""
        exc_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        record = ResultRecord(
            message.id,
            state,
            None,
            exc_type,
            str(exc),
            format_traceback(exc) if exc.__traceback__ else None,
            self.clock_ms(),
            message.retries,
        )
        store = None
        ignored = self._ignore_result(message, task) if task is not None else self.app.conf.task_ignore_result
        if not ignored or self.app.conf.task_store_errors_even_if_ignored:
            store = StoreResult(message.id, encode_record(record), self._ttl_s(message, task))
        return Outcome(
            kind, message.id, message.task, state, store, record, reason=reason, exc=exc, runtime_s=runtime_s
        )


def _run_coroutine_blocking(coro: Any) -> Any:
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

    thread = threading.Thread(target=target, name="celeriac-eager")
    thread.start()
    thread.join()
    if "exc" in box:
        raise box["exc"]
    return box.get("value")
