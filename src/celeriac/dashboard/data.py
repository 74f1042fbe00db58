"""What the pages and the JSON API show, read from Redis on each request (no state kept here).

Queue counts, workers and dead letters come from the broker's admin API; task outcomes, failures and
charts from :class:`celeriac.monitor.reader.MonitorReader`. Both HTML pages and ``/api/`` call the
functions here, so they always agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .._redis.client import to_str
from .._redis.keys import GROUP, KeySchema
from ..monitor.keys import monitor_keys
from ..monitor.reader import WINDOWS, MonitorReader, Page, Series
from ..monitor.record import TaskRecord

if TYPE_CHECKING:
    from ..app import Celeriac

#: samples of each queue's "entries added" counter kept for the rate in (see ``rates_in``)
_RATE_SAMPLES = 64
_RATE_EVERY_MS = 5_000


@dataclass
class QueueRow:
    name: str
    ready: int = 0
    delayed: int = 0
    running: int = 0
    dead: int = 0
    consumers: int = 0
    oldest_age_s: float | None = None
    added_total: int | None = None
    rate_in_per_s: float | None = None
    rate_out_per_s: float | None = None
    recorded: int = 0
    failures_kept: int = 0


@dataclass
class WorkerRow:
    worker_id: str
    hostname: str = ""
    pid: str = ""
    queues: list[str] = field(default_factory=list)
    pool: str = ""
    concurrency: int = 0
    running: int = 0
    processed: int = 0
    failed: int = 0
    rss_mb: float | None = None
    version: str = ""
    started_at: float | None = None
    last_seen_s: float | None = None
    events: str = ""
    tasks: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


class DashboardData:
    """Reads for one app. Thread-safe (redis-py clients are); one per dashboard app."""

    def __init__(self, app: Celeriac, queues: Sequence[str] = ()) -> None:
        self.app = app
        self.broker = app.broker
        self.extra_queues = list(queues)
        client = getattr(self.broker, "sync", None)
        if client is None:
            raise TypeError("the dashboard needs a Redis broker (this app's broker has no Redis client)")
        self.client = client
        self.keys = KeySchema(app.conf.key_prefix)
        self.reader = MonitorReader(client, app.conf.key_prefix)

    # ---- queues ------------------------------------------------------------------------------------
    def queue_names(self) -> list[str]:
        """Queues workers consume, the app's default and routed queues, and any given to the app."""
        names = set(self.broker.known_queues())
        names.add(self.app.conf.task_default_queue)
        names.update(self.app.conf.task_routes.values())
        names.update(self.extra_queues)
        return sorted(names)

    def queues(self, now_ms: int | None = None) -> list[QueueRow]:
        """Counts, age of the oldest waiting message and rates of every queue: three round trips."""
        names = self.queue_names()
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            q = self.keys.queue(name)
            pipe.xinfo_groups(q.ready)
            pipe.zcard(q.delayed)
            pipe.xlen(q.dead)
            pipe.xinfo_stream(q.ready)
            pipe.xlen(q.ready)
        replies = pipe.execute(raise_on_error=False)
        rows: list[QueueRow] = []
        pipe = self.client.pipeline(transaction=False)
        for i, name in enumerate(names):
            groups, delayed, dead, info, length = replies[5 * i : 5 * i + 5]
            row = QueueRow(name, delayed=_int(delayed), dead=_int(dead))
            last_delivered = "0-0"
            lag = None
            if isinstance(groups, list):
                for g in groups:
                    if to_str(g.get("name", "")) == GROUP:
                        row.running = int(g.get("pending", 0))
                        row.consumers = int(g.get("consumers", 0))
                        lag = g.get("lag")
                        last_delivered = to_str(g.get("last-delivered-id", "0-0"))
            row.ready = int(lag) if lag is not None else max(0, _int(length) - row.running)
            if isinstance(info, dict) and info.get("entries-added") is not None:
                row.added_total = int(info["entries-added"])
            rows.append(row)
            # the oldest waiting message: the first entry after the group's last delivered one
            pipe.xrange(self.keys.queue(name).ready, f"({last_delivered}", "+", count=1)
        for row, first in zip(rows, pipe.execute(raise_on_error=False)):
            if row.ready and isinstance(first, list) and first:
                ms = int(to_str(first[0][0]).partition("-")[0])
                row.oldest_age_s = max(0.0, (now_ms - ms) / 1000)
        self._rates(rows, now_ms)
        sizes = self.reader.sizes(names)
        for row in rows:
            row.recorded, row.failures_kept = sizes[row.name]
        return rows

    def _rates(self, rows: list[QueueRow], now_ms: int) -> None:
        """Rate in: from samples of each stream's ``entries-added`` counter that readers leave in
        ``<prefix>:{q}:m:added`` (a sorted set of at most 64 samples, 1 h TTL: the only thing the
        dashboard writes). Rate out: outcomes recorded over the last two minutes (rollups)."""
        pipe = self.client.pipeline(transaction=False)
        for row in rows:
            key = monitor_keys(self.app.conf.key_prefix, row.name).roll_prefix.replace("roll:", "added")
            pipe.zrevrangebyscore(key, now_ms, now_ms - 600_000, start=0, num=_RATE_SAMPLES, withscores=True)
        samples = pipe.execute(raise_on_error=False)
        pipe = self.client.pipeline(transaction=False)
        writes = 0
        for row, got in zip(rows, samples):
            key = monitor_keys(self.app.conf.key_prefix, row.name).roll_prefix.replace("roll:", "added")
            got = got if isinstance(got, list) else []
            newest = int(got[0][1]) if got else 0
            if row.added_total is not None and now_ms - newest >= _RATE_EVERY_MS:
                pipe.zadd(key, {f"{now_ms}:{row.added_total}": now_ms})
                pipe.zremrangebyrank(key, 0, -_RATE_SAMPLES - 1)
                pipe.pexpire(key, 3_600_000)
                writes += 1
            # the sample closest to one minute old (at least 10 s old)
            best = None
            for member, score in got:
                age = now_ms - score
                if age >= 10_000 and (best is None or abs(age - 60_000) < abs(now_ms - best[1] - 60_000)):
                    best = (member, score)
            if best is not None and row.added_total is not None:
                then = int(to_str(best[0]).partition(":")[2] or 0)
                row.rate_in_per_s = max(0.0, (row.added_total - then) / ((now_ms - best[1]) / 1000))
        if writes:
            pipe.execute(raise_on_error=False)
        done = self.reader.recent_outcomes([r.name for r in rows], now_s=now_ms / 1000)
        for row in rows:
            row.rate_out_per_s = done[row.name] / 120

    # ---- workers -----------------------------------------------------------------------------------
    def workers(self) -> list[WorkerRow]:
        now = time.time()
        expiry = {
            to_str(k): float(v) for k, v in self.client.zrange(self.keys.workers, 0, -1, withscores=True)
        }
        ttl = self.app.conf.worker_ttl_s
        out = []
        for w in self.broker.workers():
            f = w.fields
            row = WorkerRow(
                w.worker_id,
                hostname=f.get("hostname", ""),
                pid=f.get("pid", ""),
                queues=[q for q in f.get("queues", "").split(",") if q],
                pool=f.get("pool", ""),
                concurrency=_int(f.get("concurrency")),
                running=_int(f.get("running")),
                processed=_int(f.get("processed")),
                failed=_int(f.get("failed")),
                rss_mb=_int(f.get("rss_kb")) / 1024 if f.get("rss_kb") else None,
                version=f.get("version", ""),
                started_at=float(f["started_at"]) if _is_number(f.get("started_at")) else None,
                events=f.get("events", ""),
                fields=f,
            )
            exp = expiry.get(w.worker_id)
            if exp is not None:
                row.last_seen_s = max(0.0, now - (exp / 1000 - ttl))
            try:
                row.tasks = [
                    {"id": str(t[0]), "name": str(t[1]), "ready_s": float(t[2])}
                    for t in json.loads(f.get("tasks", "[]"))
                ]
            except (ValueError, TypeError, IndexError):
                row.tasks = []
            out.append(row)
        out.sort(key=lambda r: r.worker_id)
        return out

    # ---- tasks -------------------------------------------------------------------------------------
    def tasks(
        self,
        *,
        queue: str | None = None,
        state: str | None = None,
        name: str | None = None,
        exception_type: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        queues = [queue] if queue else self.queue_names()
        return self.reader.page(
            queues,
            state=state,
            name=name,
            exception_type=exception_type,
            since_ms=since_ms,
            until_ms=until_ms,
            cursor=cursor,
            limit=limit,
        )

    def task(self, task_id: str) -> tuple[list[TaskRecord], dict[str, Any] | None]:
        """The task's recorded outcomes (oldest first) and its stored result, if any."""
        timeline = self.reader.task(task_id, self.queue_names())
        return timeline, self.stored_result(task_id)

    def workflow(self, task_id: str, latest: TaskRecord | None) -> dict[str, Any] | None:
        """Workflow links of a task (or of a group or chord id), both ways: see
        :mod:`celeriac.monitor.links`."""
        from ..monitor.links import workflow

        details = latest.details if latest is not None else None
        return workflow(self.client, self.app.conf.key_prefix, task_id, details, self.queue_names())

    def stored_result(self, task_id: str) -> dict[str, Any] | None:
        """The result record in the result store (never unpickled), as text."""
        backend = self.app.backend
        if backend is None:
            return None
        try:
            payload = backend.get(task_id)
        except Exception:  # a result store that is down must not break the page
            return None
        if payload is None:
            return None
        from ..monitor.record import truncate
        from ..record import decode_record

        try:
            rec = decode_record(task_id, payload, unpickle=False)
        except Exception:
            return {"state": "?", "value": "<undecodable result>"}
        return {
            "state": str(rec.state),
            "value": truncate(_safe_repr(rec.value), 4000),
            "exc_type": rec.exc_type,
            "exc_message": rec.exc_message,
            "traceback": rec.traceback,
            "date_done_ms": rec.date_done_ms,
        }

    def failures(self) -> list[dict[str, Any]]:
        groups = self.reader.failure_groups(self.queue_names())
        return [
            {
                "queue": g.queue,
                "name": g.name,
                "exception_type": g.exception_type,
                "count": g.count,
                "latest": g.latest.as_json() if g.latest else None,
            }
            for g in groups
        ]

    def series(self, window: str, name: str = "*", queue: str | None = None) -> Series:
        if window not in WINDOWS:
            window = "hour"
        return self.reader.series([queue] if queue else self.queue_names(), window, name)

    # ---- dead letters ------------------------------------------------------------------------------
    def dead_letters(
        self, queue: str, after: str | None = None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Dead letters of a queue, oldest first, keyset-paged by entry id."""
        from ..broker.redis import _parse_dead_letters

        q = self.keys.queue(queue)
        start = f"({after}" if after else "-"
        entries = self.client.xrange(q.dead, start, "+", count=limit + 1)
        letters = _parse_dead_letters(entries[:limit])
        rows = [
            {
                "entry_id": d.entry_id,
                "task_id": d.task_id,
                "reason": d.reason,
                "time_ms": d.time_ms,
                "queue": queue,
            }
            for d in letters
        ]
        more = len(entries) > limit
        return rows, (letters[-1].entry_id if more and letters else None)

    def overview(self, window: str = "hour") -> dict[str, Any]:
        queues = self.queues()
        workers = self.workers()
        s = self.series(window)
        return {
            "queues": [asdict(q) for q in queues],
            "workers": len(workers),
            "workers_running": sum(w.running for w in workers),
            "window": window,
            "series": series_json(s),
        }


def series_json(s: Series) -> dict[str, Any]:
    return {
        "resolution": s.resolution,
        "starts": s.starts,
        "counts": s.counts,
        "total": s.total,
        "failures": s.failures,
        "runtime_p50_s": s.percentile_s(0.5),
        "runtime_p95_s": s.percentile_s(0.95),
        "runtime_sum_s": s.runtime_sum_s,
    }


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _safe_repr(v: Any) -> str:
    try:
        return repr(v)
    except Exception as exc:
        return f"<repr failed: {type(exc).__name__}>"
