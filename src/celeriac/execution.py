"""Task-execution semantics, for every pool and for eager mode: decode, look up, check, call, decide.

:class:`Execution` turns a message into an :class:`Outcome`: what to store as the result, and what
the broker should do with the delivery (ack, park a retry, dead-letter with a reason, or hand it back
to run again). It does no I/O and never calls the task itself: a driver does that and hands back a
value or an exception, and :meth:`Execution.finish` decides. The drivers are the worker's
(:mod:`celeriac.worker.executor`: asyncio, through a pool, under time limits) and eager mode's
(:mod:`celeriac.eager`: inline, in the caller's thread). This module sits in the middle layer, beside
the codec, so that sending and eager mode never import worker code.

One home per rule: "the call's option, else the task's, else the app's default" is resolved here
(:func:`effective`, :class:`Effective`) for ``ignore_result``, the result TTL, ``acks_late`` and the
time limits a call or task sets.

Why this module is long: it is one message's whole decision, from decode to outcome (success, retry,
failure, dead letter, expiry, revoke), for every pool and eager mode; split, the parts would share
the outcome rules across modules, and the success path is written out because it runs for every task.
"""

from __future__ import annotations

import traceback
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from . import signals
from ._clock import wall_ms
from ._redis.keys import LEVEL_SEP, split_level
from .context import Request
from .exceptions import (
    ConfigurationError,
    DecodeError,
    Ignore,
    MaxRetriesExceededError,
    NotRegistered,
    Reject,
    Replaced,
    Retry,
    SerializationError,
    TaskExpiredError,
    TaskRevokedError,
    WorkerLostError,
)
from .message import Message
from .record import ResultRecord, ResultWrite, encode_record
from .retry import backoff_delay_s
from .states import TaskState

if TYPE_CHECKING:
    from .app import Celeriac
    from .config import Config
    from .task import Task

_MAX_TRACEBACK_CHARS = 16_000

T = TypeVar("T")

#: set on an exception that crossed a process boundary: its traceback, formatted where it was raised
REMOTE_TRACEBACK_ATTR = "_celeriac_remote_traceback"


def effective(call: T | None, task: T | None, default: T) -> T:
    """The rule for every per-task option: the call's value, else the task's, else the default."""
    if call is not None:
        return call
    return task if task is not None else default


def check_time_limit(name: str, value: float | None) -> float | None:
    """``value`` when it is a valid time limit (None or a positive number of seconds).

    Raises:
        ConfigurationError: anything else (what is wrong, and what is expected).
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not value > 0):
        raise ConfigurationError(name, f"must be a positive number of seconds, got {value!r}")
    return value


@dataclass(frozen=True)
class TimeLimits:
    """Soft and hard time limits in seconds (``None``: no limit).

    As worker defaults (``--soft-time-limit``, ``--time-limit``) they apply to tasks that set none;
    a task's own limits (``@app.task(time_limit=...)``) and a call's (``apply_async(time_limit=...)``)
    win, each limit on its own. How a pool enforces them is the worker's (:mod:`celeriac.worker.limits`).
    """

    soft_s: float | None = None
    hard_s: float | None = None

    def __post_init__(self) -> None:
        check_time_limit("soft_time_limit", self.soft_s)
        check_time_limit("time_limit", self.hard_s)

    def __bool__(self) -> bool:
        return self.soft_s is not None or self.hard_s is not None

    def for_job(self, job: Job) -> TimeLimits:
        """The limits of one run: the call's, else the task's, else these defaults."""
        m, t = job.message, job.task
        if (
            m.time_limit_s is None
            and m.soft_time_limit_s is None
            and t.time_limit is None
            and t.soft_time_limit is None
        ):
            return self  # the common case, on every task: no lookups, no new object
        soft = _seconds(effective(m.soft_time_limit_s, t.soft_time_limit, self.soft_s))
        hard = _seconds(effective(m.time_limit_s, t.time_limit, self.hard_s))
        if soft == self.soft_s and hard == self.hard_s:
            return self
        return TimeLimits(soft, hard)


NO_LIMITS = TimeLimits()


def _seconds(value: float | None) -> float | None:
    return float(value) if value is not None else None


@dataclass(slots=True)  # not frozen: hot path (design.md)
class Effective:
    """The options one run goes by, each resolved once by :func:`effective`."""

    ignore_result: bool
    result_ttl_s: float
    acks_late: bool

    @classmethod
    def of(cls, message: Message, task: Task[Any, Any] | None, conf: Config) -> Effective:
        if task is None:  # an unknown task: only the call's options and the app's defaults
            return cls(
                effective(message.ignore_result, None, conf.task_ignore_result),
                float(effective(message.result_expires_s, None, conf.result_expires_s)),
                effective(message.acks_late, None, conf.task_acks_late),
            )
        # the rule of :func:`effective`, written out: this runs for every task a worker runs
        ignore = message.ignore_result
        if ignore is None:
            ignore = task.ignore_result
            if ignore is None:
                ignore = conf.task_ignore_result
        expires = message.result_expires_s
        if expires is None:
            expires = task.result_expires
            if expires is None:
                expires = conf.result_expires_s
        late = message.acks_late
        if late is None:
            late = task.acks_late
            if late is None:
                late = conf.task_acks_late
        return cls(ignore, float(expires), late)


#: marks flow control puts on a message it hands back to wait in Redis (``flow/gate.py``): ``rl`` (a
#: rate limiter reserved its start time), ``cl`` (parked under a concurrency limit)
LIMIT_MARKS = ("rl", "cl")


@dataclass(slots=True)  # not frozen: hot path (design.md)
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
    store: ResultWrite | None = None
    record: ResultRecord | None = None
    retry_data: bytes = b""
    delay_ms: int | None = None
    eta_ms: int | None = None
    reason: str = ""
    exc: BaseException | None = None
    value: Any = None
    runtime_s: float = 0.0
    #: the message that ran (None when it could not be decoded): for the outcome's log line and hooks
    message: Message | None = None
    #: the lock of a unique task that finished (released with the settlement)
    unique: str | None = None
    #: the queue the message came from (a unique lock is released there)
    queue: str = ""


@dataclass(slots=True)  # not frozen: hot path (design.md)
class Job:
    """A decoded message whose task is known and whose arguments fit: ready to call."""

    message: Message
    task: Task[Any, Any]
    request: Request
    data: bytes
    #: the resolved options (:meth:`Execution.options`), computed when first needed
    resolved: Effective | None = None
    #: a prefetching worker's wait for a slot that the pool's own queue carries
    #: (``worker.slotgate.QueuedWait``; the threads pool), else None
    admission: Any = None
    #: the task's own run time, where the pool measures it apart from the worker's bookkeeping (the
    #: processes pool: the child's, from the answer), for the prefetch bound; else None
    ran_s: float | None = None

    @property
    def label(self) -> str:
        """``task[id]``, as logs name a run."""
        return f"{self.message.task}[{self.message.id}]"

    @property
    def acks_late(self) -> bool:
        resolved = self.resolved  # set by a worker's prepare for a message without options of its own
        if resolved is not None:
            return resolved.acks_late
        m, t = self.message.acks_late, self.task.acks_late
        if m is not None:
            return m
        if t is not None:
            return t
        return self.options.acks_late

    @property
    def options(self) -> Effective:
        if self.resolved is None:
            self.resolved = Effective.of(self.message, self.task, self.task.app.conf)
        return self.resolved


def _group_of(w: dict[str, Any]) -> tuple[str | None, int | None]:
    """``(group_id, group_index)`` of a workflow member: its group's (``g``, ``i``), or its chord's
    (the pointer ``d``); ids travel as 16 bytes when they are UUIDs (``workflow.plan._pack_id``)."""
    if w.get("g") is not None:
        gid, index = w["g"], w.get("i") or 0
    elif isinstance(w.get("d"), list) and len(w["d"]) >= 2:
        gid, index = w["d"][0], w["d"][1]
    else:
        return None, None
    if isinstance(gid, bytes) and len(gid) == 16:
        gid = str(uuid.UUID(bytes=gid))
    return str(gid), int(index)


def format_traceback(exc: BaseException) -> str:
    remote = getattr(exc, REMOTE_TRACEBACK_ATTR, None)
    if isinstance(remote, str):
        return remote[-_MAX_TRACEBACK_CHARS:]
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-_MAX_TRACEBACK_CHARS:]


class Execution:
    """The execution semantics of one app's tasks (its registry, codec, settings and clock)."""

    def __init__(self, app: Celeriac) -> None:
        self.app = app
        self.clock = app.clock
        #: per task, the options of a message that sets none of its own (nearly every message), resolved
        #: once; None: resolved per job (eager mode makes an Execution per call). A long-lived user
        #: (the worker's executor) sets a dict with :meth:`cache_options`.
        self._defaults: dict[Task[Any, Any], Effective] | None = None

    def cache_options(self) -> None:
        """Resolve each task's default options once, not per job; forgotten when a setting changes
        (the listener holds the cache only, not this object)."""
        defaults: dict[Task[Any, Any], Effective] = {}
        self.app.conf.on_change(lambda _name: defaults.clear())
        self._defaults = defaults

    def clock_ms(self) -> int:
        return wall_ms(self.clock)

    # ---- before the call ---------------------------------------------------------------------------
    def prepare(
        self, data: bytes, *, queue: str = "", delivery: int = 1, eager: bool = False
    ) -> Job | Outcome:
        """Decode and check a message. Returns a Job to run, or the Outcome of a message that must not run."""
        app = self.app
        codec = app._codec  # app.codec without its property call (this runs for every task)
        if codec is None:
            codec = app.codec  # built on first use, and again after a setting it depends on changed
        try:
            message = codec.decode(data)
        except DecodeError as exc:
            if signals.task_rejected.receivers:
                signals.task_rejected.send(sender=None, message=data, exc=exc)
            return Outcome("dead", reason=f"undecodable message: {exc}", exc=exc)
        task = app.tasks.get(message.task)
        if task is None:
            missing = NotRegistered(message.task)
            if signals.task_unknown.receivers:
                signals.task_unknown.send(
                    sender=None, name=message.task, id=message.id, message=data, exc=missing
                )
            return self._failed(message, None, missing, kind="dead", reason=f"unknown task: {missing}")
        if message.expires_ms is not None and self.clock_ms() > message.expires_ms:
            return self.expired(message, task, queue)
        # Arguments are checked only when the call raises TypeError (see finish): binding a signature
        # for every message costs more than running a small task.
        eta_ms, expires_ms, task_id = message.eta_ms, message.expires_ms, message.id
        request = Request(  # positional, in the field order of Request: this runs for every task
            task_id,  # id
            message.task,  # task
            message.args,  # args
            message.kwargs,  # kwargs
            message.retries,  # retries
            eta_ms / 1000 if eta_ms is not None else None,  # eta
            expires_ms / 1000 if expires_ms is not None else None,  # expires
            delivery,  # delivery
            split_level(queue)[0] if LEVEL_SEP in queue else queue,  # queue: a priority level's queue
            eager,  # is_eager
            message.root_id or task_id,  # root_id: a task sent on its own is its own root (Celery)
            message.parent_id,  # parent_id
            None,  # traceparent
            message.max_retries,  # max_retries
        )
        if message.extra:
            w = message.extra.get("w")
            if isinstance(w, dict):  # a workflow member (celeriac.workflow)
                request.workflow = w
                request.group_id, request.group_index = _group_of(w)
        defaults = self._defaults
        if (
            defaults is not None
            and message.ignore_result is None
            and message.result_expires_s is None
            and message.acks_late is None
        ):  # the call sets no option of its own: the task's (else the app's) apply, resolved once
            resolved = defaults.get(task)
            if resolved is None:
                resolved = defaults[task] = Effective.of(message, task, self.app.conf)
            return Job(message, task, request, data, resolved)
        return Job(message, task, request, data)

    def expired(self, message: Message, task: Task[Any, Any], queue: str = "", why: str = "") -> Outcome:
        """The outcome of a message whose ``expires`` passed before it started: it never runs.

        State EXPIRED; but REVOKED (Celery's state for every expired task) when it waited behind a
        rate or concurrency limit (``why``, or the marks those put on a message they hand back), as
        issue 12 asks: the reason says which limit. Either way ``task_revoked`` is sent with
        ``expired=True`` (Celery's signal) and ``get()`` raises :class:`TaskExpiredError` (a
        :class:`TaskRevokedError`).
        """
        if signals.task_revoked.receivers:
            signals.task_revoked.send(
                sender=task, request=message, terminated=False, signum=None, expired=True
            )
        if not why and message.extra:
            if LIMIT_MARKS[0] in message.extra:
                why = "while waiting for its turn under a rate limit"
            elif LIMIT_MARKS[1] in message.extra:
                why = "while waiting for a slot under max_concurrency"
        if not why:
            expired = TaskExpiredError(f"task {message.id} expired before it started")
            return self._failed(message, task, expired, kind="ack", state=TaskState.EXPIRED, queue=queue)
        exc = TaskExpiredError(f"task {message.id} expired {why}")
        outcome = self._failed(
            message, task, exc, kind="ack", reason=f"expired {why}", state=TaskState.REVOKED, queue=queue
        )
        outcome.message = message
        return outcome

    def revoked(self, job: Job, why: str = "revoked before it started") -> Outcome:
        """The outcome of a job whose task was revoked (``app.control.revoke``): not run, or stopped
        (``terminate``); REVOKED is stored (``get()`` raises :class:`TaskRevokedError`)."""
        exc = TaskRevokedError(f"task {job.message.id} {why}")
        return self._failed(
            job.message, job.task, exc, kind="ack", state=TaskState.REVOKED, queue=job.request.queue
        )

    # ---- after the call --------------------------------------------------------------------------
    def finish(
        self, job: Job, *, value: Any = None, exc: Exception | None = None, runtime_s: float = 0.0
    ) -> Outcome:
        """The outcome of a finished call: success, retry, dead-letter or failure."""
        if exc is None:  # a success (written out here: this runs for every task a worker runs)
            message = job.message
            options = job.resolved
            if options is None:
                options = job.options
            if options.ignore_result:
                outcome = Outcome(
                    "ack", message.id, message.task, TaskState.SUCCESS, value=value, runtime_s=runtime_s
                )
            else:
                outcome = self._stored_success(job, value, runtime_s, options)
        else:
            outcome = self._finish(job, exc=exc, runtime_s=runtime_s)
        if job.message.unique_key is not None:
            outcome.queue = job.request.queue
            if outcome.kind in ("retry", "release"):
                outcome.unique = None  # not finished: a unique task keeps its lock
            elif outcome.unique is None:
                outcome.unique = job.message.unique_key
        return outcome

    def _stored_success(self, job: Job, value: Any, runtime_s: float, options: Effective) -> Outcome:
        """The outcome of a success whose result is stored."""
        message = job.message
        record = ResultRecord(
            message.id, TaskState.SUCCESS, value, date_done_ms=self.clock_ms(), retries=message.retries
        )
        try:
            payload = self.app.codec.encode_result(record, message)
        except SerializationError as ser:
            return self._failed(message, job.task, ser, kind="ack", runtime_s=runtime_s)
        return Outcome(
            "ack",
            message.id,
            message.task,
            TaskState.SUCCESS,
            store=ResultWrite(message.id, payload, options.result_ttl_s),
            record=record,
            value=value,
            runtime_s=runtime_s,
        )

    def _finish(self, job: Job, *, exc: Exception, runtime_s: float = 0.0) -> Outcome:
        """The outcome of a call that raised: retry, dead-letter or failure."""
        message, task = job.message, job.task
        if isinstance(exc, TypeError):
            try:
                task.check_arguments(message.args, message.kwargs)
            except TypeError as mismatch:
                return self._failed(
                    message, task, mismatch, kind="dead", reason=f"wrong arguments: {mismatch}"
                )
        if isinstance(exc, WorkerLostError) and job.acks_late and task.app.conf.task_reject_on_worker_lost:
            # at-least-once: the process died before an outcome existed, so the task runs again
            # (max_deliveries still dead-letters a task that kills every process it runs in)
            return Outcome("release", message.id, message.task, reason=str(exc), exc=exc, runtime_s=runtime_s)
        if isinstance(exc, Ignore):  # the task took care of its own state: nothing is recorded
            return Outcome("ack", message.id, message.task, None, runtime_s=runtime_s)
        if isinstance(exc, Replaced):  # the replacement took its place in the workflow: nothing to store
            return Outcome("ack", message.id, message.task, runtime_s=runtime_s)
        if isinstance(exc, Reject):
            if exc.requeue:  # handed back to run again; max_deliveries bounds a task that always asks
                return Outcome(
                    "release", message.id, message.task, reason=f"requeued by the task: {exc.reason}", exc=exc
                )
            return self._failed(message, task, exc, kind="dead", reason=f"rejected by the task: {exc.reason}")
        retry = exc if isinstance(exc, Retry) else None
        autoretry = task.autoretry_for and isinstance(exc, task.autoretry_for)
        if retry is None and autoretry and not isinstance(exc, task.dont_autoretry_for):
            retry = Retry(exc=exc, countdown_s=None)  # the task's policy decides the delay
        if retry is None:
            return self._failed(message, task, exc, kind="ack", runtime_s=runtime_s)

        max_retries = effective(retry.max_retries, message.max_retries, task.max_retries)
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
            if retry.countdown_s is not None:
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
        queue: str = "",
    ) -> Outcome:
        """A failure outcome; the error is stored unless results are ignored and error storing is off."""
        exc_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        record = ResultRecord(
            task_id=message.id,
            state=state,
            exc_type=exc_type,
            exc_message=str(exc),
            traceback=format_traceback(exc) if exc.__traceback__ else None,
            date_done_ms=self.clock_ms(),
            retries=message.retries,
        )
        conf = self.app.conf
        options = Effective.of(message, task, conf)
        store = None
        if not options.ignore_result or conf.task_store_errors_even_if_ignored:
            store = ResultWrite(message.id, encode_record(record), options.result_ttl_s)
        return Outcome(
            kind,
            message.id,
            message.task,
            state,
            store,
            record,
            reason=reason,
            exc=exc,
            runtime_s=runtime_s,
            unique=message.unique_key,
            queue=queue,
        )
