"""``app.control.inspect()`` and ``celeriac inspect``: what live workers run, what waits delayed, how
each worker does. Celery's method names and result shapes (dicts keyed by worker name), read from
Redis rather than gathered by a broadcast:

* ``active()``: each worker's running tasks (id, name, args and kwargs as a ``repr`` cut to 100
  characters, ``time_start``, queue), from its heartbeat (``worker/active.py``, at most 100 listed per
  worker, the longest-running first);
* ``stats()``: each worker's pool, concurrency, counters, resident size and uptime, from its heartbeat;
* ``scheduled()``: tasks waiting for an ``eta``/``countdown`` (or a retry delay, or their turn under a
  rate limit). celeriac keeps these **in Redis**, in each queue's delayed set, not in worker memory
  as Celery does: so they are listed per **queue** (the dict's keys are queue names), soonest first,
  at most ``limit`` of them (a page: ``offset``), whatever the set's size;
* ``ping()``: the workers that answered within ``timeout``.

Fresh answers: before reading heartbeats, :class:`Inspect` asks the workers (``destination`` or all)
to publish their heartbeat now (a ``heartbeat`` command in the revocation stream every worker follows,
``control.lua``) and waits up to ``timeout`` seconds for them. A worker that does not answer in time
(busy loop, older version) shows its last heartbeat (at most ``worker_ttl_s / 3`` old); ``ping()``
leaves it out.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .app import Celeriac
    from .broker.base import WorkerInfo

__all__ = ["Inspect", "ScheduledPage", "active_of", "iso_utc", "short_repr", "stats_of"]

#: default page size of ``scheduled()``
SCHEDULED_LIMIT = 100
#: how often the refresh checks whether the workers answered
_POLL_S = 0.05
#: characters kept of the repr of a task's args and of its kwargs
REPR_MAX = 100
#: the marker a rate limiter puts on a task it handed back with a reserved start time (flow/gate.py)
_RATE_MARK = "rl"


def short_repr(value: Any, limit: int = REPR_MAX) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` marks the cut)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iso_utc(epoch_s: float) -> str:
    """``2026-12-04T01:02:03.456000+00:00``: Celery's ``eta`` format."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat()


def _destination(destination: str | Iterable[str] | None) -> tuple[str, ...]:
    if destination is None:
        return ()
    names = [destination] if isinstance(destination, str) else list(destination)
    out: list[str] = []
    for name in names:
        out += [n.strip() for n in name.split(",") if n.strip()]
    return tuple(dict.fromkeys(out))


@dataclass
class ScheduledPage:
    """One page of delayed tasks: ``entries`` soonest first, ``totals`` per queue (all waiting)."""

    entries: list[tuple[str, dict[str, Any]]]
    totals: dict[str, int]


class Inspect:
    """``app.control.inspect(destination=None, timeout=1.0)`` (see the module docstring).

    Args:
        app: the app (its broker).
        destination: worker names (``worker@host``), a comma-separated string, or None for all.
        timeout: seconds to wait for workers to publish a fresh heartbeat (0: read what is there).
        limit: page size of :meth:`scheduled`.
        offset: first entry of the page of :meth:`scheduled`.
        queues: queues :meth:`scheduled` reads (default: the queues workers consumed, and the default one).
    """

    def __init__(
        self,
        app: Celeriac,
        destination: str | Iterable[str] | None = None,
        timeout: float = 1.0,
        *,
        limit: int = SCHEDULED_LIMIT,
        offset: int = 0,
        queues: Sequence[str] | None = None,
        **_celery: Any,
    ) -> None:
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be >= 1 and offset >= 0 (got limit={limit}, offset={offset})")
        self.app = app
        self.destination = _destination(destination)
        self.timeout = max(0.0, float(timeout))
        self.limit = limit
        self.offset = offset
        self.queues = list(queues) if queues else None
        #: workers that published a heartbeat after the last refresh asked them to
        self.answered: set[str] = set()

    # ---- workers -----------------------------------------------------------------------------------
    def workers(self) -> list[WorkerInfo]:
        """The live workers in ``destination`` (all when none is given), after asking them for a
        fresh heartbeat (see the module docstring), sorted by name."""
        before = self._live()
        if self.timeout > 0 and before:
            self._refresh(before)
        else:
            self.answered = set()
        return sorted(self._live(), key=lambda w: w.worker_id)

    def unknown_destinations(self, live: Iterable[WorkerInfo]) -> list[str]:
        """Destination names that no live worker has."""
        names = {w.worker_id for w in live}
        return [d for d in self.destination if d not in names]

    def _live(self) -> list[WorkerInfo]:
        infos = self.app.broker.workers()
        if self.destination:
            infos = [w for w in infos if w.worker_id in self.destination]
        return infos

    def _refresh(self, before: list[WorkerInfo]) -> None:
        from .broker.redis import RedisBroker

        broker = self.app.broker
        self.answered = set()
        if not isinstance(broker, RedisBroker):
            return  # the memory broker's workers run in this process: their heartbeats are as fresh
        stamps = {w.worker_id: w.fields.get("beat_at", "") for w in before}
        broker.send_control("heartbeat", self.destination)
        deadline = time.monotonic() + self.timeout
        client = broker.sync
        ids = list(stamps)
        while True:
            pipe = client.pipeline(transaction=False)
            for worker_id in ids:
                pipe.hget(broker.keys.worker(worker_id), "beat_at")
            for worker_id, stamp in zip(ids, pipe.execute()):
                if stamp is not None and stamp.decode() != stamps[worker_id]:
                    self.answered.add(worker_id)
            ids = [i for i in ids if i not in self.answered]
            if not ids or time.monotonic() >= deadline:
                return
            time.sleep(_POLL_S)

    # ---- Celery's methods ----------------------------------------------------------------------------
    def ping(self) -> dict[str, dict[str, str]]:
        """``{worker: {"ok": "pong"}}`` for each worker that answered within ``timeout``."""
        live = self.workers()
        answered = self.answered if self.timeout > 0 else {w.worker_id for w in live}
        return {w.worker_id: {"ok": "pong"} for w in live if w.worker_id in answered}

    def active(self) -> dict[str, list[dict[str, Any]]]:
        """``{worker: [task, ...]}``: the tasks each worker runs now (Celery's keys: ``id``, ``name``,
        ``args``, ``kwargs``, ``type``, ``hostname``, ``time_start``, ``acknowledged``,
        ``delivery_info``; ``args``/``kwargs`` are ``repr`` strings cut to 100 characters)."""
        return {w.worker_id: active_of(w) for w in self.workers()}

    def stats(self) -> dict[str, dict[str, Any]]:
        """``{worker: stats}``: pid, pool (implementation, max-concurrency, running), processed and
        failed counts, resident size (``rss_kb``), uptime, queues, and the raw heartbeat fields."""
        now = time.time()
        return {w.worker_id: stats_of(w, now) for w in self.workers()}

    def scheduled(self) -> dict[str, list[dict[str, Any]]]:
        """``{queue: [entry, ...]}``: delayed tasks, soonest first, one page (``limit``, ``offset``).
        Keyed by queue, not worker: they wait in Redis, not on a worker. Each entry has Celery's
        ``eta``, ``priority`` and ``request`` (``id``, ``name``, ``args``, ``kwargs``...), plus
        ``queue`` and ``waiting_for`` (``eta`` or ``rate_limit``)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for queue, entry in self.scheduled_page().entries:
            out.setdefault(queue, []).append(entry)
        return out

    def reserved(self) -> dict[str, list[dict[str, Any]]]:
        """Celery's prefetched tasks: always empty lists (a celeriac worker fetches only for free slots,
        so it holds nothing it does not run)."""
        return {w.worker_id: [] for w in self.workers()}

    def registered(self) -> dict[str, list[str]]:
        """The task names of this app (every worker of one app registers the same tasks)."""
        names = sorted(n for n in self.app.tasks if not n.startswith("celeriac."))
        return {w.worker_id: names for w in self.workers()}

    # ---- the delayed sets -------------------------------------------------------------------------------
    def scheduled_queues(self) -> list[str]:
        if self.queues:
            return self.queues
        broker = self.app.broker
        return list(dict.fromkeys([*broker.known_queues(), self.app.conf.task_default_queue]))

    def scheduled_page(self) -> ScheduledPage:
        """One page of delayed tasks over :meth:`scheduled_queues` and their priority levels: reads
        ``offset + limit`` entries from each delayed set (``ZRANGE`` by rank), never the whole set.

        Raises:
            ConfigurationError: the broker is not Redis.
        """
        from ._redis.client import to_str
        from ._redis.keys import level_queue
        from .broker.redis import RedisBroker

        broker = self.app.broker
        if not isinstance(broker, RedisBroker):
            raise ConfigurationError(
                "broker_url", "inspect scheduled reads Redis's delayed sets: use a Redis broker"
            )
        queues = self.scheduled_queues()
        client = broker.sync
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.smembers(broker.keys.levels(queue))
        parts: list[tuple[str, str, int]] = []  # (queue, physical queue, level)
        for queue, levels in zip(queues, pipe.execute()):
            parts.append((queue, queue, 0))
            for level in sorted(int(to_str(m)) for m in levels):
                parts.append((queue, level_queue(queue, level), level))
        # one delayed set: read the page by rank; several: the first offset + limit of each, merged
        # by due time (a deep page over several queues reads more: page one queue with -Q)
        start = self.offset if len(parts) == 1 else 0
        want = self.offset + self.limit
        pipe = client.pipeline(transaction=False)
        for _queue, physical, _level in parts:
            delayed = broker.keys.queue(physical).delayed
            pipe.zcard(delayed)
            pipe.zrange(delayed, start, want - 1, withscores=True)
        replies = pipe.execute()
        totals: dict[str, int] = {}
        streams: list[list[tuple[float, int, str, bytes, int]]] = []
        for n, (queue, _physical, level) in enumerate(parts):
            totals[queue] = totals.get(queue, 0) + int(replies[2 * n])
            streams.append([(score, n, queue, member, level) for member, score in replies[2 * n + 1]])
        merged = list(heapq.merge(*streams))[self.offset - start : want - start]
        entries = [
            (queue, self._entry(queue, member, score, level)) for score, _n, queue, member, level in merged
        ]
        return ScheduledPage(entries, totals)

    def _entry(self, queue: str, data: bytes, due_ms: float, level: int) -> dict[str, Any]:
        eta = iso_utc(due_ms / 1000)
        try:
            m = self.app.codec.decode(data)
        except Exception as exc:
            return {
                "eta": eta,
                "priority": level,
                "queue": queue,
                "waiting_for": "eta",
                "request": {"id": None, "name": None, "error": f"undecodable message: {exc}"},
            }
        return {
            "eta": eta,
            "priority": level,
            "queue": queue,
            "waiting_for": "rate_limit" if m.extra and _RATE_MARK in m.extra else "eta",
            "request": {
                "id": m.id,
                "name": m.task,
                "args": short_repr(m.args),
                "kwargs": short_repr(m.kwargs),
                "type": m.task,
                "hostname": None,
                "time_start": None,
                "acknowledged": False,
                "delivery_info": {"routing_key": queue, "priority": level, "redelivered": m.retries > 0},
                "retries": m.retries,
                "expires": iso_utc(m.expires_ms / 1000) if m.expires_ms is not None else None,
            },
        }


def active_of(w: WorkerInfo) -> list[dict[str, Any]]:
    """A worker's running tasks from its heartbeat (``worker/active.py``); from an older worker's
    ``tasks`` field (id, name, time ready) when that is all there is."""
    raw = w.fields.get("active")
    if raw:
        try:
            rows = json.loads(raw)
            if isinstance(rows, list):
                return [r for r in rows if isinstance(r, dict)]
        except ValueError:
            pass
    try:
        old = json.loads(w.fields.get("tasks", "[]"))
    except ValueError:
        return []
    return [
        {
            "id": t[0],
            "name": t[1],
            "args": "",
            "kwargs": "",
            "type": t[1],
            "hostname": w.worker_id,
            "time_start": t[2],
        }
        for t in old
        if isinstance(t, list) and len(t) >= 3
    ]


_INT_FIELDS = ("pid", "concurrency", "running", "processed", "failed", "rss_kb", "active_count")


def stats_of(w: WorkerInfo, now: float) -> dict[str, Any]:
    """A worker's stats in Celery's shape where one exists (``pid``, ``pool``, ``uptime``), with the
    heartbeat's own fields under ``heartbeat``."""
    f = w.fields
    ints = {k: _int(f.get(k)) for k in _INT_FIELDS}
    started = _float(f.get("started_at"))
    beat = _float(f.get("beat_at"))
    return {
        "pid": ints["pid"],
        "hostname": f.get("hostname"),
        "uptime": round(now - started) if started else None,
        "pool": {
            "implementation": f.get("pool"),
            "max-concurrency": ints["concurrency"],
            "running": ints["running"],
            **({"autoscale": f["autoscale"]} if "autoscale" in f else {}),
        },
        "processed": ints["processed"],
        "failed": ints["failed"],
        "rss_kb": ints["rss_kb"],
        "queues": [q for q in f.get("queues", "").split(",") if q],
        "version": f.get("version"),
        "heartbeat_age_s": round(now - beat, 3) if beat else None,
        "heartbeat": {k: v for k, v in f.items() if k not in ("active", "tasks")},
    }


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
