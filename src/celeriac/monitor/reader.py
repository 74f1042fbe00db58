"""The read side of monitoring: what the dashboard, ``/metrics`` and scripts read, from Redis only.

A reader holds no state of its own (only a client): any number of dashboard processes show the same
numbers, and a restart loses nothing. Lists are keyset-paged on stream ids and charts read the
rollups: O(page) Redis work whatever the data size. Filters the indexes do not cover (task name, a
state other than failed) scan at most ``scan_budget`` records per call and return a cursor to
continue from. A lookup by id searches the lookup index (4 bytes per outcome kept) in bounded
ranges, so that no call holds Redis for long: the index is written at no cost per outcome, and a
lookup (a person's click) pays for it instead.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.exceptions import NoScriptError

from .._redis.client import to_str
from .keys import RESOLUTIONS, MonitorKeys, entry_of, id_keys, monitor_keys
from .record import FAILED_STATES, STATES, TaskRecord, decode_entry, decode_row, entry_rows
from .rollup import ALL, N_BUCKETS, RUNTIME_BUCKETS_S, bucket_field, count_field, sum_field
from .script import FIND, SERIES, is_cluster

#: chart windows: name -> (resolution, number of buckets)
WINDOWS = {"hour": ("m", 60), "day": ("h", 24), "week": ("h", 168)}
_MAX_TIMELINE = 25
#: outcomes of the lookup index (``m:ix``) one ``find.lua`` call reads (4 bytes each)
_FIND_RANGE = 250_000
_NO_END = 2**62


@dataclass
class Page:
    """One page of records, newest first."""

    records: list[TaskRecord]
    #: pass as ``cursor`` for the next page; None when there is nothing older
    next_cursor: str | None
    #: records looked at (filters that no index covers scan; see ``scan_budget``)
    scanned: int = 0
    #: True when the scan budget ran out before the page was full (``next_cursor`` continues)
    partial: bool = False


@dataclass
class FailureGroup:
    """Failures of one task name with one exception type."""

    queue: str
    name: str
    exception_type: str
    count: int
    latest: TaskRecord | None = None


@dataclass
class Series:
    """A chart: per bucket start (epoch s), outcome counts by state, runtime histogram and sum."""

    resolution: str
    starts: list[int]
    counts: dict[str, list[int]]
    histogram: list[list[int]]  # per bucket, N_BUCKETS non-cumulative counts
    runtime_sum_s: list[float]

    @property
    def total(self) -> list[int]:
        return [sum(c[i] for c in self.counts.values()) for i in range(len(self.starts))]

    @property
    def failures(self) -> list[int]:
        return [sum(self.counts[s][i] for s in FAILED_STATES) for i in range(len(self.starts))]

    def percentile_s(self, q: float) -> list[float | None]:
        """Per bucket, the upper bound of the histogram bucket holding the q-quantile (None: no runs)."""
        out: list[float | None] = []
        for hist in self.histogram:
            n = sum(hist)
            if not n:
                out.append(None)
                continue
            rank, seen = q * n, 0
            for i, c in enumerate(hist):
                seen += c
                if seen >= rank:
                    out.append(RUNTIME_BUCKETS_S[i] if i < len(RUNTIME_BUCKETS_S) else float("inf"))
                    break
        return out


@dataclass
class Cursor:
    """Where a listing stopped: the last record shown (entry id, index in entry, queue)."""

    ms: int
    seq: int
    index: int
    queue: str

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        if not text:
            return None
        try:
            entry, index, queue = text.split(".", 2)
            ms, seq = entry.split("-")
            return cls(int(ms), int(seq), int(index), queue)
        except ValueError:
            raise ValueError(f"not a cursor: {text!r} (expected ms-seq.index.queue)") from None

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}.{self.index}.{self.queue}"


def _sort_key(r: TaskRecord) -> tuple[int, int, str, int]:
    ms, _, seq = r.entry_id.partition("-")
    return int(ms), int(seq or 0), r.queue, r.index


#: a row as read: (entry ms, entry seq, queue, index in entry, msgpack row, worker, entry id)
_Raw = tuple[int, int, str, int, list[Any], str, str]


def _raw_key(raw: _Raw) -> tuple[int, int, str, int]:
    return raw[0], raw[1], raw[2], raw[3]


class MonitorReader:
    """Reads the monitoring data of one app.

    Args:
        client: a synchronous redis-py client (``decode_responses`` off).
        prefix: the app's key prefix.
    """

    def __init__(self, client: Any, prefix: str = "celeriac") -> None:
        self.client = client
        self.prefix = prefix

    # ---- tasks ---------------------------------------------------------------------------------------
    def page(
        self,
        queues: Sequence[str],
        *,
        state: str | None = None,
        name: str | None = None,
        exception_type: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        cursor: str | None = None,
        limit: int = 50,
        scan_budget: int = 20_000,
    ) -> Page:
        """Recent outcomes of ``queues``, newest first, filtered; keyset-paged by ``cursor``.

        Failed states (``FAILURE``, ``DEAD``) and ``exception_type`` read the failures index (kept
        longer than the log); everything else reads the log.
        """
        at = Cursor.parse(cursor)
        failures = state in FAILED_STATES or bool(exception_type)
        streams = [self._stream(q, failures, at, since_ms, until_ms) for q in queues]
        # rows stay raw msgpack arrays until they match: a page decodes only what it shows
        merged = heapq.merge(*streams, key=_raw_key, reverse=True)
        out: list[TaskRecord] = []
        scanned = 0
        last: _Raw | None = None
        partial = False
        for raw in merged:
            scanned += 1
            last = raw
            row = raw[4]
            if (state is None or row[2] == state) and (name is None or row[1] == name):
                rec = decode_row(row, raw[2], raw[5], raw[6], raw[3])
                if rec is not None and (exception_type is None or rec.exception_type == exception_type):
                    out.append(rec)
                    if len(out) >= limit:
                        break
            if scanned >= scan_budget:
                partial = True
                break
        # a full page says "more" only when some record follows (unfiltered: the last page is never
        # empty; filtered: the next page may be, after a scan)
        more = last is not None and (partial or (len(out) >= limit and next(merged, None) is not None))
        for st in streams:
            st.close()
        next_cursor = str(Cursor(last[0], last[1], last[3], last[2])) if more and last else None
        return Page(out, next_cursor, scanned, partial)

    def _stream(
        self, queue: str, failures: bool, at: Cursor | None, since_ms: int | None, until_ms: int | None
    ) -> Generator[_Raw, None, None]:
        """One queue's raw rows, newest first, strictly after ``at`` in listing order."""
        k = monitor_keys(self.prefix, queue)
        key = k.fail if failures else k.log
        hi = f"{until_ms}" if until_ms is not None else "+"
        lo = f"{since_ms}" if since_ms is not None else "-"
        if at is not None:
            hi = f"{at.ms}-{at.seq}"  # inclusive: the rest of that entry is filtered below
        count = 2
        while True:
            entries = self.client.xrevrange(key, hi, lo, count=count)
            if not entries:
                return
            for entry_id, fields in entries:
                eid = to_str(entry_id)
                ms_text, _, seq_text = eid.partition("-")
                ms, seq = int(ms_text), int(seq_text or 0)
                try:
                    rows = msgpack.unpackb(fields.get(b"r", b""), raw=False, strict_map_key=False)
                except Exception:  # not ours: skip
                    continue
                if not isinstance(rows, list):
                    continue
                rows = entry_rows(rows)
                top = len(rows)
                if at is not None and (ms, seq) == (at.ms, at.seq):
                    if queue > at.queue:
                        continue
                    if queue == at.queue:
                        top = min(top, at.index)
                worker = to_str(fields.get(b"w", b""))
                for i in range(top - 1, -1, -1):
                    row = rows[i]
                    if isinstance(row, list) and len(row) >= 8:
                        yield (ms, seq, queue, i, row, worker, eid)
            last = to_str(entries[-1][0])
            lms, _, lseq = last.partition("-")
            if int(lseq) > 0:
                hi = f"{lms}-{int(lseq) - 1}"
            elif int(lms) > 0:
                hi = f"{int(lms) - 1}-18446744073709551615"
            else:
                return
            count = min(count * 2, 64)

    def follow(
        self, queues: Sequence[str], after: dict[str, str] | None = None, block_ms: int = 1000
    ) -> tuple[list[TaskRecord], dict[str, str]]:
        """Outcomes recorded after the positions in ``after`` (queue -> log entry id; a queue not in
        it starts from now), oldest first, waiting up to ``block_ms`` for the first; returns them and
        the positions to pass next time (``celeriac events``-style tailing). One blocking ``XREAD``
        over all queues; on Redis Cluster (several slots) pass one queue per call."""
        given = after or {}
        positions = {q: given[q] for q in queues if q in given}
        pending = [q for q in queues if q not in given]
        if pending:
            # "from now": each stream's last id, taken before the read. (An XREAD from "$" that
            # returns one queue's new entry leaves another's "$" unresolved: pinned after the read,
            # it would skip what that queue recorded meanwhile, such as the other half of one write.)
            pipe = self.client.pipeline(transaction=False)
            for queue in pending:
                pipe.xrevrange(monitor_keys(self.prefix, queue).log, count=1)
            for queue, last in zip(pending, pipe.execute()):
                positions[queue] = to_str(last[0][0]) if last else "0-0"
        reply = self.client.xread(
            {monitor_keys(self.prefix, q).log: positions[q] for q in queues}, count=100, block=block_ms
        )
        out: list[TaskRecord] = []
        by_key = {monitor_keys(self.prefix, q).log: q for q in queues}
        for key, entries in reply.items() if isinstance(reply, dict) else reply or []:
            q = by_key.get(to_str(key))
            if q is None:
                continue
            for entry_id, fields in entries:
                eid = to_str(entry_id)
                out += decode_entry(fields.get(b"r", b""), q, to_str(fields.get(b"w", b"")), eid)
                positions[q] = eid
        out.sort(key=lambda r: (r.finished_ms, _sort_key(r)))
        return out, positions

    def task(self, task_id: str, queues: Sequence[str]) -> list[TaskRecord]:
        """Every recorded outcome of one task (its timeline), oldest first; empty when unknown.

        The lookup index (``m:ix``, 4 bytes per recorded outcome) is searched by ``find.lua`` in
        ranges of :data:`_FIND_RANGE` outcomes, newest first, all queues at once; the log entries it
        names are read and their records compared with ``task_id`` (a key may match another id)."""
        key = id_keys([task_id])
        keys = {q: monitor_keys(self.prefix, q) for q in queues}
        # the newest range of every queue, then older ranges of the queues that have more
        todo = {q: _NO_END for q in queues}
        entries: dict[str, list[str]] = {q: [] for q in queues}
        while todo:
            calls = [(q, keys[q], end) for q, end in todo.items()]
            todo = {}
            for (q, _k, end), reply in zip(calls, self._find_calls(key, calls)):
                base, n, found = int(reply[0]), int(reply[1]), reply[2]
                entries[q] += [to_str(e) for e in found]
                top = min(end, n)
                if top - _FIND_RANGE > base:
                    todo[q] = top - _FIND_RANGE
        found_records: list[TaskRecord] = []
        pipe = self.client.pipeline(transaction=False)
        wanted = [(q, e) for q in queues for e in entries[q][:_MAX_TIMELINE]]
        for q, e in wanted:
            pipe.xrange(keys[q].log, e, e)
        for (q, _e), got in zip(wanted, pipe.execute()):
            for entry_id, fields in got:
                recs = decode_entry(fields.get(b"r", b""), q, to_str(fields.get(b"w", b"")), to_str(entry_id))
                found_records += [r for r in recs if r.task_id == task_id]
        if not any(r.failed for r in found_records):
            # a failure outlives its log entry (failures are kept longer): look it up there too
            hit = self._failure_entry(task_id, queues)
            if hit is not None:
                q, _eid, fields = hit
                recs = decode_entry(fields.get(b"r", b""), q, to_str(fields.get(b"w", b"")), _eid)
                found_records += [r for r in recs if r.task_id == task_id]
        # (the runs of one task end in order; within one millisecond its retries count tells)
        found_records.sort(key=lambda r: (r.finished_ms, r.retries, _sort_key(r)))
        return found_records

    def _find_calls(self, key: bytes, calls: list[tuple[str, MonitorKeys, int]]) -> list[Any]:
        """Run ``find.lua`` for each (queue, keys, end): over the range of outcomes before ``end``."""

        def args(end: int) -> list[Any]:
            return [key, end, _FIND_RANGE]

        if is_cluster(self.client):  # a cluster pipeline refuses scripts: one call per queue
            return [FIND(self.client, [k.ix, k.ixh, k.ents], args(end)) for _q, k, end in calls]
        pipe = self.client.pipeline(transaction=False)
        for _q, k, end in calls:
            pipe.evalsha(FIND.sha, 3, k.ix, k.ixh, k.ents, *args(end))
        replies: list[Any] = pipe.execute(raise_on_error=False)
        for i, ((_q, k, end), reply) in enumerate(zip(calls, replies)):
            if isinstance(reply, NoScriptError):
                replies[i] = FIND(self.client, [k.ix, k.ixh, k.ents], args(end))
            elif isinstance(reply, Exception):
                raise reply
        return replies

    def _failure_entry(
        self, task_id: str, queues: Sequence[str]
    ) -> tuple[str, str, dict[bytes, bytes]] | None:
        """The latest failure entry of ``task_id``: (queue, entry id, fields)."""
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            pipe.zscore(monitor_keys(self.prefix, q).fids, task_id)
        for q, score in zip(queues, pipe.execute()):
            if score is None:
                continue
            ms, seq = entry_of(score)
            key = monitor_keys(self.prefix, q).fail
            hi = f"{ms}-18446744073709551615" if seq >= 4095 else f"{ms}-{seq}"
            for entry_id, fields in self.client.xrange(key, f"{ms}-{seq}", hi):
                recs = decode_entry(fields.get(b"r", b""), q, "", to_str(entry_id))
                if recs and recs[0].task_id == task_id:
                    return q, to_str(entry_id), fields
        return None

    def failed_message(self, task_id: str, queues: Sequence[str]) -> tuple[str, bytes] | None:
        """The message of the latest recorded failure of ``task_id``, as sent (queue, bytes), for a
        retry; None when no failure of it is kept."""
        hit = self._failure_entry(task_id, queues)
        if hit is None or not hit[2].get(b"m"):
            return None
        return hit[0], hit[2][b"m"]

    def failure_groups(self, queues: Sequence[str], limit: int = 200) -> list[FailureGroup]:
        """Failures grouped by (queue, task name, exception type), most frequent first, each with its
        latest failure (traceback and arguments)."""
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            pipe.hgetall(monitor_keys(self.prefix, q).fgroups)
        groups: list[tuple[FailureGroup, str]] = []
        for q, fields in zip(queues, pipe.execute()):
            last: dict[str, str] = {}
            counts: dict[str, int] = {}
            for raw_k, raw_v in fields.items():
                f = to_str(raw_k)
                if f.endswith("\x00last"):
                    last[f[: -len("\x00last")]] = to_str(raw_v)
                else:
                    try:
                        counts[f] = int(raw_v)
                    except ValueError:
                        continue
            for f, n in counts.items():
                name, _, exc = f.partition("\x00")
                groups.append((FailureGroup(q, name, exc, n), last.get(f, "")))
        groups.sort(key=lambda g: -g[0].count)
        groups = groups[:limit]
        pipe = self.client.pipeline(transaction=False)
        for g, fid in groups:
            pipe.xrange(monitor_keys(self.prefix, g.queue).fail, fid or "+", fid or "+")
        for (g, _fid), entries in zip(groups, pipe.execute()):
            for entry_id, fields in entries:
                recs = decode_entry(
                    fields.get(b"r", b""), g.queue, to_str(fields.get(b"w", b"")), to_str(entry_id)
                )
                g.latest = recs[0] if recs else None
        return [g for g, _ in groups]

    # ---- charts and counters -------------------------------------------------------------------------
    def series(
        self, queues: Sequence[str], window: str = "hour", name: str = ALL, now_s: float | None = None
    ) -> Series:
        """Outcomes per bucket over the last ``window`` (``hour``: per minute; ``day``, ``week``: per
        hour), summed over ``queues``, for one task name or all (``*``)."""
        res, n = WINDOWS[window]
        length = RESOLUTIONS[res]
        now = int(now_s if now_s is not None else time.time())
        last = now // length
        buckets = list(range(last - n + 1, last + 1))
        fields = [count_field(name, s) for s in STATES]
        fields += [bucket_field(name, i) for i in range(N_BUCKETS)]
        fields.append(sum_field(name))
        replies = self._hmget_many(queues, [(res, b) for b in buckets], fields)
        counts = {s: [0] * n for s in STATES}
        hist = [[0] * N_BUCKETS for _ in range(n)]
        sums = [0.0] * n
        for j, values in enumerate(replies):
            i = j % n
            if not values:
                continue
            for si, s in enumerate(STATES):
                if values[si] is not None:
                    counts[s][i] += int(values[si])
            for h in range(N_BUCKETS):
                v = values[len(STATES) + h]
                if v is not None:
                    hist[i][h] += int(v)
            v = values[-1]
            if v is not None:
                sums[i] += int(v) / 1_000_000
        return Series(res, [b * length for b in buckets], counts, hist, sums)

    def recent_outcomes(self, queues: Sequence[str], now_s: float | None = None) -> dict[str, int]:
        """Per queue, outcomes recorded in the last two complete minutes (for a rate out)."""
        now = int(now_s if now_s is not None else time.time())
        minute = now // 60
        fields = [count_field(ALL, s) for s in STATES]
        replies = self._hmget_many(queues, [("m", minute - 2), ("m", minute - 1)], fields)
        out = {}
        for i, q in enumerate(queues):
            out[q] = sum(int(v) for r in replies[2 * i : 2 * i + 2] for v in r if v is not None)
        return out

    def _hmget_many(
        self, queues: Sequence[str], buckets: Sequence[tuple[str, int]], fields: Sequence[str]
    ) -> list[list[Any]]:
        """HMGET ``fields`` of each rollup bucket of each queue: one script call per queue (all of a
        queue's keys share its slot), pipelined; replies in (queue, bucket) order."""
        calls = []
        for q in queues:
            k = monitor_keys(self.prefix, q)
            calls.append(([k.roll(res, b) for res, b in buckets], fields))
        if is_cluster(self.client):  # a cluster pipeline refuses scripts: one call per queue
            return [row for keys, f in calls for row in SERIES(self.client, keys, f)]
        pipe = self.client.pipeline(transaction=False)
        for keys, f in calls:
            pipe.evalsha(SERIES.sha, len(keys), *keys, *f)
        replies = pipe.execute(raise_on_error=False)
        out: list[list[Any]] = []
        for (keys, f), reply in zip(calls, replies):
            if isinstance(reply, NoScriptError):
                reply = SERIES(self.client, keys, f)
            elif isinstance(reply, Exception):
                raise reply
            out += reply
        return out

    def totals(self, queues: Sequence[str]) -> dict[str, dict[str, int]]:
        """Lifetime counters per queue (``m:total``: ``<name>|<STATE>``, ``<name>|h<i>``, ``<name>|us``)."""
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            pipe.hgetall(monitor_keys(self.prefix, q).total)
        out: dict[str, dict[str, int]] = {}
        for q, fields in zip(queues, pipe.execute()):
            parsed: dict[str, int] = {}
            for k, v in fields.items():
                try:
                    parsed[to_str(k)] = int(v)
                except ValueError:
                    continue
            out[q] = parsed
        return out

    def sizes(self, queues: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Per queue: (outcomes in the log, failures kept)."""
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            k = monitor_keys(self.prefix, q)
            pipe.hget(k.ixh, "n")
            pipe.zrange(k.ents, 0, 0, withscores=True)
            pipe.xlen(k.fail)
        r = pipe.execute()
        out = {}
        for i, q in enumerate(queues):
            n, first, failures = r[3 * i : 3 * i + 3]
            kept = int(n) - int(first[0][1]) if n is not None and first else 0
            out[q] = (kept, int(failures))
        return out
