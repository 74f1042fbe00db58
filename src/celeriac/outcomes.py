"""Task outcomes as the worker reports them: one log line each, a JSON log format, and a hook.

Log lines (logger ``celeriac.task``), one line per outcome, as the worker records it:

=================  ========  ===============================================================
outcome            level     line
=================  ========  ===============================================================
failed             ERROR     ``Task shop.charge[<id>] failed in 0.012s: ValueError: declined``
dead-lettered      ERROR     ``Task shop.charge[<id>] dead-lettered: max retries (3) exceeded: ...``
retried            WARNING   ``Task shop.charge[<id>] retry 2 in 4s: ConnectionError: ...``
revoked, expired   WARNING   ``Task shop.charge[<id>] revoked: <reason>``
succeeded          INFO      ``Task shop.charge[<id>] succeeded in 0.012s`` (as Celery says it)
=================  ========  ===============================================================

So the default level (WARNING) shows every outcome that needs a look and nothing per success;
``--loglevel info`` adds successes, and the traceback of a failure on the lines after it.

JSON (``celeriac worker --log-format json``): every log record is one JSON object on one line
(``ts``, ``level``, ``logger``, ``message``, ``pid``), and an outcome's line also has the fields of
:meth:`OutcomeEvent.as_json` (``event``, ``task_id``, ``task_name``, ``queue``, ``state``, ``worker``,
``queued_at``, ``started_at``, ``finished_at``, ``runtime_s``, ``retries``, ``exception_type``,
``exception_message``, ``traceback``, ``reason``, ``args``/``kwargs`` for failures (truncated, secrets
redacted as on the dashboard), ``parent_id``, ``root_id``, ``trace_id``/``span_id`` when traced). In
JSON mode every outcome is logged, successes included (ready for CloudWatch, Loki, Elasticsearch).

Hook: ``@app.on_outcome`` registers a function called with each :class:`OutcomeEvent` in the worker
process once the outcome is recorded, on the worker's event loop: keep it quick (hand the event to a
queue and ship it from a thread; see docs/outcomes.md for a CloudWatch exporter). An
exception it raises is logged and does not affect the task.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from .states import TaskState

if TYPE_CHECKING:
    from .app import Celeriac
    from .execution import Outcome
    from .message import Message

logger = logging.getLogger("celeriac.task")

Event = Literal["succeeded", "failed", "retried", "dead_lettered", "revoked", "expired"]
_LEVELS: dict[str, int] = {
    "succeeded": logging.INFO,
    "failed": logging.ERROR,
    "dead_lettered": logging.ERROR,
    "retried": logging.WARNING,
    "revoked": logging.WARNING,
    "expired": logging.WARNING,
}


@dataclass(slots=True)
class OutcomeEvent:
    """One task outcome, as logged and as handed to ``@app.on_outcome`` hooks."""

    event: Event
    task_id: str
    task_name: str
    queue: str
    state: str
    worker: str
    queued_ms: int | None
    started_ms: int | None
    finished_ms: int
    runtime_s: float
    retries: int
    exception_type: str | None = None
    exception_message: str | None = None
    traceback: str | None = None
    reason: str | None = None
    #: repr of the arguments, failures only, truncated and with secret-looking kwargs redacted
    args: str | None = None
    kwargs: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    #: the W3C trace id the task ran in (when it was sent with tracing on: joins logs to traces)
    trace_id: str | None = None
    #: the retry's delay in seconds (retries only)
    retry_in_s: float | None = None

    @property
    def level(self) -> int:
        return _LEVELS[self.event]

    def line(self) -> str:
        """The human log line (one line; see the module docstring)."""
        head = f"Task {self.task_name}[{self.task_id}]"
        error = f"{_short_type(self.exception_type)}: {self.exception_message}" if self.exception_type else ""
        if self.event == "succeeded":
            return f"{head} succeeded in {self.runtime_s:.6f}s"
        if self.event == "failed":
            return _one_line(f"{head} failed in {self.runtime_s:.6f}s: {error or self.reason or self.state}")
        if self.event == "retried":
            when = f" in {self.retry_in_s:g}s" if self.retry_in_s is not None else ""
            return _one_line(f"{head} retry {self.retries + 1}{when}: {error or self.reason}")
        if self.event == "dead_lettered":
            return _one_line(f"{head} dead-lettered: {self.reason or error}")
        return _one_line(f"{head} {self.event}: {self.reason or error or self.state}")

    def as_json(self) -> dict[str, Any]:
        """The event's fields for a JSON log line (times as ISO 8601 UTC; empty fields left out)."""
        out: dict[str, Any] = {"event": f"task.{self.event}"}
        for f in fields(self):
            name = f.name
            if name == "event":
                continue
            value = getattr(self, name)
            if value is None:
                continue
            if name.endswith("_ms"):
                out[name[:-3] + "_at"] = iso_ms(value)
            else:
                out[name] = value
        return out


def emit(event: OutcomeEvent, handlers: list[Callable[[OutcomeEvent], None]]) -> None:
    """Log ``event`` and hand it to ``handlers``; a failing handler is logged, never raised."""
    level = event.level
    if logger.isEnabledFor(level):
        exc_text = event.traceback if event.event == "failed" and logger.isEnabledFor(logging.INFO) else None
        logger.log(
            level, "%s", event.line(), extra={"celeriac_outcome": event, "celeriac_traceback": exc_text}
        )
    for handler in handlers:
        try:
            handler(event)
        except Exception:  # a broken exporter must not break the worker
            logging.getLogger("celeriac.worker").exception("an on_outcome handler failed (%r)", handler)


def wanted(event: Event, handlers: list[Callable[[OutcomeEvent], None]]) -> bool:
    """True when an event of this kind would be logged or handed to a hook (else skip building it)."""
    return bool(handlers) or logger.isEnabledFor(_LEVELS[event])


def event_kind(kind: str, state: str | None) -> Event:
    """The event of an outcome's broker action and task state."""
    if kind == "retry":
        return "retried"
    if kind == "dead":
        return "dead_lettered"
    if state == "REVOKED":
        return "revoked"
    if state == "EXPIRED":
        return "expired"
    if state in (None, "SUCCESS"):
        return "succeeded"
    return "failed"


def is_success(o: Outcome) -> bool:
    """An outcome reported as ``succeeded`` (logged at INFO only)."""
    state = o.state
    return o.exc is None and o.kind == "ack" and (state is None or state is TaskState.SUCCESS)


class OutcomeReporter:
    """Turns the outcomes a worker records into log lines and ``on_outcome`` calls.

    Args:
        app: whose hooks (``app.outcome_handlers``) and redaction settings apply.
        worker_id: reported with each event.
    """

    def __init__(self, app: Celeriac, worker_id: str) -> None:
        from .monitor.record import redact_pattern

        self.handlers = app.outcome_handlers
        self.worker_id = worker_id
        self._max_arg_chars = app.conf.monitor_max_arg_chars
        self._redact = redact_pattern(app.conf.monitor_redact)

    def successes_silent(self) -> bool:
        """True when a success would produce nothing (no hook, INFO off): a caller reporting a batch
        asks once and skips the successes (:func:`is_success`)."""
        return not self.handlers and not logger.isEnabledFor(logging.INFO)

    def report(self, queue: str, entry_id: str, o: Outcome, message: Message | None = None) -> None:
        """Log and hand on the outcome of a delivery (nothing is built when nobody would see it)."""
        handlers = self.handlers
        state = o.state
        kind: Event
        if is_success(o):
            # the common case, once per task: a success, logged at INFO only
            if not handlers and not logger.isEnabledFor(logging.INFO):
                return
            kind = "succeeded"
        else:
            kind = event_kind(o.kind, state.value if state is not None else None)
            if not handlers and not logger.isEnabledFor(_LEVELS[kind]):
                return
        emit(self.event(kind, queue, entry_id, o, message), handlers)

    def event(
        self, kind: Event, queue: str, entry_id: str, o: Outcome, message: Message | None
    ) -> OutcomeEvent:
        now_ms = int(time.time() * 1000)
        record = o.record
        exc_type = record.exc_type if record is not None else None
        exc_message = record.exc_message if record is not None else None
        tb = record.traceback if record is not None else None
        if exc_type is None and o.exc is not None:
            exc_type = f"{type(o.exc).__module__}.{type(o.exc).__qualname__}"
            exc_message = str(o.exc)
        dash = entry_id.find("-")
        event = OutcomeEvent(
            event=kind,
            task_id=o.task_id or "?",
            task_name=o.task_name or "?",
            queue=queue,
            state="RETRY" if kind == "retried" else "DEAD" if kind == "dead_lettered" else state_of(o),
            worker=self.worker_id,
            queued_ms=int(entry_id[:dash]) if dash > 0 and entry_id[:dash].isdigit() else None,
            started_ms=now_ms - int(o.runtime_s * 1000) if o.runtime_s else None,
            finished_ms=now_ms,
            runtime_s=round(o.runtime_s, 6),
            retries=message.retries if message is not None else (record.retries if record is not None else 0),
            exception_type=exc_type,
            exception_message=exc_message,
            traceback=tb if kind in ("failed", "dead_lettered") else None,
            reason=o.reason or None,
        )
        if message is not None:
            event.parent_id, event.root_id = message.parent_id, message.root_id
            if message.traceparent and len(message.traceparent) >= 35:
                event.trace_id = message.traceparent[3:35]
            if kind in ("failed", "dead_lettered"):
                from .monitor.record import show_args

                event.args, event.kwargs = show_args(
                    message.args, message.kwargs, self._max_arg_chars, self._redact
                )
        if kind == "retried":
            if o.delay_ms is not None:
                event.retry_in_s = o.delay_ms / 1000
            elif o.eta_ms is not None:
                event.retry_in_s = max(0.0, (o.eta_ms - now_ms) / 1000)
        return event


def state_of(o: Outcome) -> str:
    return str(o.state) if o.state is not None else "SUCCESS"


def iso_ms(epoch_ms: int) -> str:
    """``2026-12-03T21:30:00.123Z``."""
    seconds, ms = divmod(int(epoch_ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def _short_type(qualified: str | None) -> str:
    if not qualified:
        return ""
    return qualified.removeprefix("builtins.")


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


class JsonFormatter(logging.Formatter):
    """Every log record as one JSON object on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": iso_ms(int(record.created * 1000)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process or os.getpid(),
        }
        event = getattr(record, "celeriac_outcome", None)
        if isinstance(event, OutcomeEvent):
            out.update(event.as_json())
        elif record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The worker's text format; a failure's traceback follows its line at INFO and below."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        tb = getattr(record, "celeriac_traceback", None)
        if isinstance(tb, str) and tb:
            text = f"{text}\n{tb.rstrip()}"
        return text


__all__ = [
    "JsonFormatter",
    "OutcomeEvent",
    "OutcomeReporter",
    "TextFormatter",
    "emit",
    "event_kind",
    "iso_ms",
    "wanted",
]
