"""``/metrics``: Prometheus text, read from Redis at scrape time (a custom ``prometheus_client``
collector). Every dashboard replica (and every ``celeriac worker --metrics-port``) serves the same
numbers, for the whole cluster; a scrape costs a few pipelined round trips whatever the task count.

Names (all prefixed ``celeriac_``; no worker label on task metrics, to keep cardinality low):

====================================  =========  ==================  ====================================
name                                  type       labels              what
====================================  =========  ==================  ====================================
``queue_length``                      gauge      queue, state        ready / delayed / running / dead
``queue_oldest_age_seconds``          gauge      queue               age of the oldest waiting message
``queue_consumers``                   gauge      queue               consumers in the queue's group
``queue_added_total``                 counter    queue               messages ever added to the ready stream
``dead_letters``                      gauge      queue               dead-lettered messages kept
``tasks_total``                       counter    queue, task, state  outcomes recorded (SUCCESS, FAILURE,
                                                                      RETRY, DEAD, EXPIRED, REVOKED)
``task_runtime_seconds``              histogram  queue, task         runtimes of runs (buckets 1 ms .. 300 s)
``workers``                           gauge                          live workers
``worker_running_tasks``              gauge      worker              tasks running on that worker
``worker_concurrency``                gauge      worker              its slots
``worker_resident_memory_bytes``      gauge      worker              its RSS
``worker_processed``                  gauge      worker              outcomes since it started
``monitor_outcomes_kept``             gauge      queue               task ids in the outcome log
``monitor_failures_kept``             gauge      queue               failures kept (with tracebacks)
====================================  =========  ==================  ====================================

Counters come from the workers' lifetime totals in Redis (``m:total``); they reset only when that
hash expires (no outcome for ``monitor_retention_days`` + 1 day), which Prometheus treats as a reset.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response

from ..monitor.rollup import ALL, N_BUCKETS, RUNTIME_BUCKETS_S

if TYPE_CHECKING:
    from ..app import Celeriac
    from .data import DashboardData

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class CeleriacCollector(Collector):
    """Collects everything above on each scrape (see the module docstring)."""

    def __init__(self, data: DashboardData) -> None:
        self.data = data

    def collect(self) -> Iterator[Metric]:
        data = self.data
        queues = data.queues()
        length = GaugeMetricFamily(
            "celeriac_queue_length", "Messages per queue and state", labels=["queue", "state"]
        )
        age = GaugeMetricFamily(
            "celeriac_queue_oldest_age_seconds", "Age of the oldest waiting message", labels=["queue"]
        )
        consumers = GaugeMetricFamily("celeriac_queue_consumers", "Consumers of the queue", labels=["queue"])
        added = CounterMetricFamily(
            "celeriac_queue_added", "Messages added to the ready stream", labels=["queue"]
        )
        dead = GaugeMetricFamily("celeriac_dead_letters", "Dead letters kept", labels=["queue"])
        kept = GaugeMetricFamily(
            "celeriac_monitor_outcomes_kept", "Task ids in the outcome log", labels=["queue"]
        )
        fkept = GaugeMetricFamily("celeriac_monitor_failures_kept", "Failures kept", labels=["queue"])
        for q in queues:
            for state in ("ready", "delayed", "running", "dead"):
                length.add_metric([q.name, state], getattr(q, state))
            age.add_metric([q.name], q.oldest_age_s or 0.0)
            consumers.add_metric([q.name], q.consumers)
            if q.added_total is not None:
                added.add_metric([q.name], q.added_total)
            dead.add_metric([q.name], q.dead)
            kept.add_metric([q.name], q.recorded)
            fkept.add_metric([q.name], q.failures_kept)
        yield from (length, age, consumers, added, dead, kept, fkept)

        totals = data.reader.totals([q.name for q in queues])
        tasks = CounterMetricFamily(
            "celeriac_tasks", "Task outcomes recorded", labels=["queue", "task", "state"]
        )
        runtime = HistogramMetricFamily(
            "celeriac_task_runtime_seconds", "Task runtimes", labels=["queue", "task"], unit=""
        )
        for queue, fields in sorted(totals.items()):
            per_task: dict[str, dict[str, int]] = {}
            for f, v in fields.items():
                name, _, rest = f.rpartition("|")
                if name and name != ALL:
                    per_task.setdefault(name, {})[rest] = v
            for task, values in sorted(per_task.items()):
                for key, v in sorted(values.items()):
                    if key.isupper():
                        tasks.add_metric([queue, task, key], v)
                counts = [values.get(f"h{i}", 0) for i in range(N_BUCKETS)]
                if any(counts):
                    cumulative, buckets = 0, []
                    for i, c in enumerate(counts):
                        cumulative += c
                        bound = RUNTIME_BUCKETS_S[i] if i < len(RUNTIME_BUCKETS_S) else math.inf
                        buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
                    runtime.add_metric([queue, task], buckets, values.get("us", 0) / 1_000_000)
        yield tasks
        yield runtime

        workers = data.workers()
        yield GaugeMetricFamily("celeriac_workers", "Live workers", value=len(workers))
        running = GaugeMetricFamily("celeriac_worker_running_tasks", "Tasks running", labels=["worker"])
        conc = GaugeMetricFamily("celeriac_worker_concurrency", "Worker slots", labels=["worker"])
        rss = GaugeMetricFamily("celeriac_worker_resident_memory_bytes", "Worker RSS", labels=["worker"])
        processed = GaugeMetricFamily(
            "celeriac_worker_processed", "Outcomes since the worker started", labels=["worker"]
        )
        for w in workers:
            running.add_metric([w.worker_id], w.running)
            conc.add_metric([w.worker_id], w.concurrency)
            processed.add_metric([w.worker_id], w.processed)
            if w.rss_mb is not None:
                rss.add_metric([w.worker_id], w.rss_mb * 1024 * 1024)
        yield from (running, conc, rss, processed)


def registry_for(data: DashboardData) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CeleriacCollector(data))
    return registry


_registries: dict[int, CollectorRegistry] = {}


def metrics_response(data: DashboardData) -> Response:
    registry = _registries.get(id(data))
    if registry is None:
        registry = _registries[id(data)] = registry_for(data)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)


def serve_metrics(app: Celeriac, port: int, address: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` for ``app`` on ``address:port`` from a daemon thread (``celeriac worker
    --metrics-port``)."""
    from prometheus_client import start_http_server

    from .data import DashboardData

    start_http_server(port, addr=address, registry=registry_for(DashboardData(app)))
