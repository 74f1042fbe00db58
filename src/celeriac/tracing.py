"""OpenTelemetry tracing: a span for each send and one for each run, joined by the W3C trace context.

Turn it on once per process, after setting up the OpenTelemetry SDK (``pip install celeriac[otel]``
brings the API; the SDK and an exporter are yours to choose)::

    from celeriac.tracing import instrument
    instrument(app)                    # in the module that defines the app: workers import it too

Then ``send`` opens a PRODUCER span ``send <queue>`` and writes its ``traceparent`` (and
``tracestate``) into the message (two optional fields: nothing is added while tracing is off); the
worker opens a CONSUMER span ``process <queue>`` whose parent is that context, around the task's run,
so a web request, the tasks it sent and the tasks those sent form one trace. Retries keep the original
trace context: every attempt is a child of the send. Baggage is not carried.

Attributes follow the OpenTelemetry messaging conventions (v1.44, stated as ``celeriac.semconv``):
``messaging.system`` = ``celeriac``, ``messaging.operation.name`` (``send``/``process``),
``messaging.operation.type``, ``messaging.destination.name`` (the queue), ``messaging.message.id`` (the
task id), plus ``celeriac.task.name`` and ``celeriac.task.retries``; a failed run sets the span status to
ERROR with ``error.type`` (the exception class) and records the exception; a retry or dead letter adds
``celeriac.outcome``. ``span_name="task"`` names spans after the task instead of the queue.

The run span is current while the task runs, so tasks sent from inside a task are its children: in
the asyncio, threads and gevent pools through the context, in the process pool through the run span's
traceparent, which travels to the child with the request (the span itself lives in the worker
process, which times the run).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from .app import Celeriac
    from .message import Message

SYSTEM = "celeriac"
#: the messaging semantic-conventions version the attribute names follow
SEMCONV = "1.44.0"


@dataclass
class Tracing:
    """The tracer of one app (see :func:`instrument`)."""

    tracer: Tracer
    span_name: Literal["queue", "task"] = "queue"

    def _name(self, operation: str, queue: str, task: str) -> str:
        target = task if self.span_name == "task" else queue
        return f"{operation} {target}" if target else operation  # eager runs have no queue

    @contextmanager
    def send(self, task: str, queue: str) -> Iterator[tuple[Span, dict[str, str]]]:
        """A PRODUCER span around one send; yields it and the message fields of its context."""
        from opentelemetry import trace

        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.destination.name": queue,
            "celeriac.task.name": task,
        }
        with self.tracer.start_as_current_span(
            self._name("send", queue, task), kind=trace.SpanKind.PRODUCER, attributes=attributes
        ) as span:
            yield span, _injected()

    @contextmanager
    def send_batch(self, count: int) -> Iterator[dict[str, str]]:
        """One PRODUCER span around a bulk send (``send_many``); every message carries its context."""
        from opentelemetry import trace

        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.batch.message_count": count,
        }
        with self.tracer.start_as_current_span("send", kind=trace.SpanKind.PRODUCER, attributes=attributes):
            yield _injected()

    @contextmanager
    def run(self, message: Message, queue: str) -> Iterator[Span]:
        """A CONSUMER span around one run, child of the context the message carries; current while
        the task runs (so the tasks it sends join the trace)."""
        from opentelemetry import propagate, trace

        carrier = {}
        if message.traceparent:
            carrier["traceparent"] = message.traceparent
            if message.tracestate:
                carrier["tracestate"] = message.tracestate
        parent = propagate.extract(carrier) if carrier else None
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.message.id": message.id,
            "celeriac.task.name": message.task,
            "celeriac.task.retries": message.retries,
        }
        if queue:
            attributes["messaging.destination.name"] = queue
        with self.tracer.start_as_current_span(
            self._name("process", queue, message.task),
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,  # the outcome is recorded by finish(), not by an exception here
            set_status_on_exception=False,
        ) as span:
            yield span

    @staticmethod
    def traceparent() -> str | None:
        """The W3C traceparent of the current span (None outside one)."""
        return _injected().get("traceparent")

    @staticmethod
    @contextmanager
    def attached(traceparent: str) -> Iterator[None]:
        """Make the span ``traceparent`` names the current context (a process-pool child, while it runs
        the task: the tasks it sends are then children of the worker's run span)."""
        from opentelemetry import context, propagate

        token = context.attach(propagate.extract({"traceparent": traceparent}))
        try:
            yield
        finally:
            context.detach(token)

    @staticmethod
    def finish(span: Span, kind: str, exc: BaseException | None, retried: bool = False) -> None:
        """Record a run's outcome on its span: ERROR status and the exception for a failure."""
        from opentelemetry.trace import Status, StatusCode

        if kind in ("retry", "dead"):
            span.set_attribute("celeriac.outcome", "retried" if kind == "retry" else "dead_lettered")
        if exc is not None:
            span.set_attribute("error.type", f"{type(exc).__module__}.{type(exc).__qualname__}")
            span.record_exception(exc)
            if kind != "retry":
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))


def instrument(
    app: Celeriac,
    *,
    tracer_provider: TracerProvider | None = None,
    span_name: Literal["queue", "task"] = "queue",
) -> Tracing:
    """Trace ``app``'s sends and runs with OpenTelemetry (see the module docstring).

    Args:
        app: the app to trace (in producers and in workers: call it where the app is defined).
        tracer_provider: the provider to use; default the global one (``trace.set_tracer_provider``).
        span_name: ``"queue"`` (the conventions' ``send <queue>``) or ``"task"`` (``send <task name>``).

    Raises:
        ConfigurationError: the OpenTelemetry API is not installed (``pip install celeriac[otel]``).
    """
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigurationError(
            "tracing", "OpenTelemetry is not installed: pip install 'celeriac[otel]' (and an SDK/exporter)"
        ) from None
    from ._version import __version__

    tracer = trace.get_tracer("celeriac", __version__, tracer_provider, schema_url=_SCHEMA_URL)
    tracing = Tracing(tracer, span_name)
    app.tracing = tracing
    return tracing


def uninstrument(app: Celeriac) -> None:
    """Stop tracing ``app``."""
    app.tracing = None


def _injected() -> dict[str, str]:
    """The current context as message fields (``traceparent``, and ``tracestate`` when present)."""
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}


_SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV}"

__all__ = ["SEMCONV", "Tracing", "instrument", "uninstrument"]
