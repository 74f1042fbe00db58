"""OpenTelemetry: a send span and a run span per task, joined through the message's traceparent, so a
web request and the tasks it sends (and the tasks those send) form one trace. Checked with the SDK's
in-memory exporter in-process, and across a real worker process (spans written to a file there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from celeriac import Celeriac
from celeriac.message import Message, decode, encode, encode_call
from celeriac.testing import ThreadWorker
from celeriac.tracing import instrument, uninstrument

pytestmark = pytest.mark.redis


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def test_no_trace_fields_while_tracing_is_off(redis_url: str) -> None:
    app = Celeriac("plain", broker=redis_url)
    assert app.tracing is None
    plain = encode(Message("00000000-0000-4000-8000-000000000000", "t.add", (1, 2)))
    assert plain == encode_call("00000000-0000-4000-8000-000000000000", "t.add", (1, 2), {})
    assert len(plain) == 29  # [1, <16 bytes>, "t.add", [1, 2]]: no options map at all
    traced = Message(
        "00000000-0000-4000-8000-000000000000",
        "t.add",
        (1, 2),
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    back = decode(encode(traced))
    assert back.traceparent == traced.traceparent
    assert back.extra == {}


def test_a_request_and_its_tasks_form_one_trace(
    redis_url: str,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    thread_worker: Callable[..., ThreadWorker],
) -> None:
    provider, exporter = spans
    app = Celeriac("traced", broker=redis_url, result_backend=redis_url)

    @app.task(name="traced.child", ignore_result=False)
    def child(x: int) -> int:
        return x * 2

    @app.task(name="traced.parent", ignore_result=False)
    def parent(x: int) -> int:
        child.delay(x)  # sent while the run span is current: joins the trace
        return x

    @app.task(name="traced.fail", ignore_result=False)
    def fail() -> None:
        raise KeyError("missing")

    instrument(app, tracer_provider=provider)
    worker = thread_worker(app, queues=["default"], concurrency=2)
    web = provider.get_tracer("web")
    with web.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as request_span:
        r = parent.delay(21)
        bad = fail.delay()
    assert r.get(timeout=10) == 21
    worker.wait_outcomes(lambda outs: len(outs) >= 3, timeout_s=10)
    uninstrument(app)
    finished = exporter.get_finished_spans()
    trace_id = request_span.get_span_context().trace_id
    sends = by_name(finished, "send default")
    runs = by_name(finished, "process default")
    assert len(sends) == 3 and len(runs) == 3, [s.name for s in finished]
    assert {s.context.trace_id for s in (*sends, *runs)} == {trace_id}  # one trace

    def send_of(task_name: str) -> ReadableSpan:
        return next(s for s in sends if s.attributes["celeriac.task.name"] == task_name)

    def run_of(task_name: str) -> ReadableSpan:
        return next(s for s in runs if s.attributes["celeriac.task.name"] == task_name)

    # request -> send parent -> process parent -> send child -> process child
    assert send_of("traced.parent").parent.span_id == request_span.get_span_context().span_id
    assert run_of("traced.parent").parent.span_id == send_of("traced.parent").context.span_id
    assert send_of("traced.child").parent.span_id == run_of("traced.parent").context.span_id
    assert run_of("traced.child").parent.span_id == send_of("traced.child").context.span_id
    assert send_of("traced.parent").kind == SpanKind.PRODUCER
    assert run_of("traced.parent").kind == SpanKind.CONSUMER
    attrs = run_of("traced.parent").attributes
    assert attrs["messaging.system"] == "celeriac"
    assert attrs["messaging.operation.name"] == "process"
    assert attrs["messaging.destination.name"] == "default"
    assert attrs["messaging.message.id"] == r.id
    assert send_of("traced.parent").attributes["messaging.message.id"] == r.id
    assert run_of("traced.parent").status.status_code == StatusCode.UNSET
    failed = run_of("traced.fail")
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "builtins.KeyError"
    assert [e.name for e in failed.events] == ["exception"]
    assert bad.id == failed.attributes["messaging.message.id"]


def test_retries_are_children_of_the_send_and_bulk_sends_share_one_span(
    redis_url: str,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    thread_worker: Callable[..., ThreadWorker],
) -> None:
    provider, exporter = spans
    app = Celeriac("retrying", broker=redis_url)

    @app.task(name="retrying.flaky", autoretry_for=(ValueError,), max_retries=2, default_retry_delay=0)
    def flaky() -> None:
        raise ValueError("again")

    @app.task(name="retrying.ok")
    def ok(i: int) -> int:
        return i

    instrument(app, tracer_provider=provider, span_name="task")
    worker = thread_worker(app, queues=["default"], concurrency=2)
    flaky.delay()
    app.send_many([ok.s(i) for i in range(5)])
    worker.wait_outcomes(lambda outs: len(outs) >= 8, timeout_s=20)
    uninstrument(app)
    finished = exporter.get_finished_spans()
    send = by_name(finished, "send retrying.flaky")[0]
    attempts = by_name(finished, "process retrying.flaky")
    assert len(attempts) == 3  # the run and two retries
    assert {a.parent.span_id for a in attempts} == {send.context.span_id}
    assert sorted(a.attributes["celeriac.task.retries"] for a in attempts) == [0, 1, 2]
    outcomes = sorted(a.attributes.get("celeriac.outcome", "") for a in attempts)
    assert outcomes == ["dead_lettered", "retried", "retried"]
    batch = by_name(finished, "send")
    assert len(batch) == 1 and batch[0].attributes["messaging.batch.message_count"] == 5
    ok_runs = by_name(finished, "process retrying.ok")
    assert len(ok_runs) == 5 and {s.parent.span_id for s in ok_runs} == {batch[0].context.span_id}


def test_eager_mode_traces_the_run_too(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    app = Celeriac("eager", broker="memory://", task_always_eager=True)

    @app.task(name="eager.add")
    def add(x: int, y: int) -> int:
        return x + y

    instrument(app, tracer_provider=provider)
    assert add.delay(1, 2).get() == 3
    send, run = exporter.get_finished_spans()[1], exporter.get_finished_spans()[0]
    assert (send.name, run.name) == ("send default", "process")  # an eager run has no queue
    assert run.parent.span_id == send.context.span_id


WORKER_APP = """
import json, os
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from celeriac import Celeriac
from celeriac.tracing import instrument

class FileExporter(SpanExporter):
    def export(self, spans):
        with open(os.environ["SPANS_FILE"], "a") as f:
            for s in spans:
                f.write(json.dumps({"name": s.name, "trace": s.context.trace_id, "span": s.context.span_id,
                                    "parent": s.parent.span_id if s.parent else None,
                                    "id": s.attributes.get("messaging.message.id")}) + "\\n")
        return SpanExportResult.SUCCESS

app = Celeriac("otelproc")
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
instrument(app, tracer_provider=provider)

@app.task(name="otelproc.add")
def add(x, y):
    return x + y

@app.task(name="otelproc.fan")
def fan(n):
    for i in range(n):
        add.delay(i, i)  # sent from inside the child process: joins the trace
"""


def test_trace_crosses_a_real_worker_process(
    redis_url: str, tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    (tmp_path / "otelproc.py").write_text(textwrap.dedent(WORKER_APP))
    spans_file = tmp_path / "spans.jsonl"
    app = Celeriac("otelproc", broker=redis_url)
    instrument(app, tracer_provider=provider)
    with provider.get_tracer("web").start_as_current_span("POST /orders") as request_span:
        ids = [app.send_task("otelproc.add", (i, i)).id for i in range(3)]
        fan_id = app.send_task("otelproc.fan", (2,)).id
    env = {
        **os.environ,
        "CELERIAC_BROKER_URL": redis_url,
        "SPANS_FILE": str(spans_file),
        "PYTHONPATH": str(tmp_path),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "celeriac.cli",
            "worker",
            "-A",
            "otelproc:app",
            "--burst",
            "-P",
            "processes",
            "-c",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    trace_id = request_span.get_span_context().trace_id
    assert {s["trace"] for s in spans} == {trace_id}  # one trace, across three kinds of process
    runs = {s["id"]: s for s in spans if s["name"] == "process default"}
    sends = {
        s.attributes["messaging.message.id"]: s
        for s in exporter.get_finished_spans()
        if s.name == "send default"
    }
    assert set(sends) == {*ids, fan_id}
    for task_id, send in sends.items():  # sent here, run by the worker: children of their send
        assert runs[task_id]["parent"] == send.context.span_id
    # fan's two sends happened in a child process of the pool: children of fan's run span (which
    # lives in the worker process), and each of their runs is a child of its send
    child_sends = [s for s in spans if s["name"] == "send default"]
    assert len(child_sends) == 2
    for send in child_sends:
        assert send["parent"] == runs[fan_id]["span"]
        assert runs[send["id"]]["parent"] == send["span"]
    assert len(runs) == 6
    trace.get_tracer_provider()  # the global provider was never touched
