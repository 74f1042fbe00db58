"""The worker side of monitoring: task outcomes into bounded Redis structures, batched with the acks.

The worker calls :meth:`Recorder.note` when an outcome is known: a plain success (the usual
outcome) is appended to a flat list of plain values (task name, queue, id, entry id, finish time,
runtime, retries: one ``list.extend``), cut into its task's columns (a :class:`_Run`) when sealed;
anything else is made a record, a tuple of plain values (nothing is encoded on the task's path).
The worker's settle loop calls :meth:`Recorder.kick` with each batch of acks: it packs what
was noted into bytes once there are a few hundred (a :class:`_Segment`: a block of a run's columns
or msgpack records, their lookup keys, their rollup counts), while they are fresh in the CPU's
caches, so that nothing per task is kept as Python objects until the write; then it starts a
write unless one is on its way, so records group like the acks do and the settle never waits for
them. A write sends all records of a queue in one ``record.lua`` call (one log entry per 1,000
records at most, the bounds and TTLs applied once, rollups summed in the worker first), in the
queue's hash slot, on the connections the recorder uses.

Recording is best effort: a flush that fails keeps its records for the next one (only those of the
calls that failed: the others were written; up to ``_MAX_PENDING``, then the oldest are dropped and
counted) and never delays or fails an ack. A delivery whose lease was lost (fenced) may be recorded by
both workers that ran it: both runs happened.

Why this module is long: the record of one outcome, its batching into one script call per queue
and the rollup counting are one hot path run for every task; split, each part would need the
others' row layout (the positions of ``_TASK_ID`` and friends) and a call per task across modules.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import struct
import time
import uuid
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import compress, repeat
from operator import is_not, itemgetter, sub
from typing import TYPE_CHECKING, Any

from redis.connection import PythonRespSerializer
from redis.exceptions import NoScriptError, ResponseError

from ..execution import format_traceback
from ..states import TaskState
from .keys import MINUTE_TTL_S, RESOLUTIONS, id_keys, monitor_keys
from .record import FAILED_STATES, block, pack, redact_pattern, show_args, truncate
from .rollup import ALL, MAX_NAMES, RUNTIME_BUCKETS_S, bucket_field, count_field, sum_field
from .script import RECORD, is_cluster

if TYPE_CHECKING:
    import redis.asyncio

    from ..app import Celeriac
    from ..broker.base import Delivery
    from ..execution import Outcome
    from ..message import Message

logger = logging.getLogger("celeriac.monitor")

_SUCCESS = TaskState.SUCCESS
_MAX_PENDING = 50_000
#: a recorded outcome not yet packed: (queue, record row, message bytes of a failure or None)
_Pending = tuple[str, tuple[Any, ...], "bytes | None"]
_CHUNK = 1000  # records per log entry (what a reader decodes to show one record of it)
#: records per script call: one call writes a queue's whole write (several entries) up to this, which
#: bounds the time Redis spends in one call and the script's argument lists
_CALL_MAX = 10 * _CHUNK
#: records packed together (:meth:`Recorder._seal`): enough that packing's fixed costs (a few calls per
#: batch) are small per record, few enough that they are still in the CPU's caches
_SEAL_AT = 500
#: between two writes of one worker: at least _MIN_INTERVAL_S, and as long as its records take to
#: reach _WRITE_RECORDS at their measured rate, up to _MAX_INTERVAL_S (the dashboard lags by that)
_MIN_INTERVAL_S = 0.1
_MAX_INTERVAL_S = 1.0
_WRITE_RECORDS = 500
_MAX_MESSAGE_CHARS = 2_000
_MAX_TRACEBACK_CHARS = 16_000


@dataclass(frozen=True)
class MonitorSettings:
    """What the recorder keeps, from the app's ``monitor_*`` settings."""

    max_entries: int = 1_000_000
    max_failures: int = 100_000
    retention_s: float = 7 * 86_400.0
    max_arg_chars: int = 1_000
    redact: tuple[str, ...] = ()

    @classmethod
    def from_app(cls, app: Celeriac) -> MonitorSettings:
        conf = app.conf
        return cls(
            conf.monitor_max_entries,
            conf.monitor_max_failures,
            conf.monitor_retention_days * 86_400.0,
            conf.monitor_max_arg_chars,
            tuple(conf.monitor_redact),
        )


class Recorder:
    """Records the outcomes of one worker (see the module docstring).

    Args:
        client: an asyncio Redis client (closed by :meth:`close` when ``owns_client``; a worker's
            recorder shares its broker's).
        prefix: the app's key prefix.
        worker_id: recorded with every batch.
        settings: bounds and redaction.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        worker_id: str,
        settings: MonitorSettings,
        owns_client: bool = True,
    ) -> None:
        self.client = client
        self.owns_client = owns_client
        self.prefix = prefix
        self.worker_id = worker_id
        self.settings = settings
        self.dropped = 0  # records lost to a long Redis outage (bounded buffer)
        self.recorded = 0
        self._redact: re.Pattern[str] = redact_pattern(settings.redact)
        self._pending: list[_Pending] = []  # records made, not yet packed (see _seal)
        #: plain successes not yet packed, by task name (:meth:`add`; see note)
        self._runs: dict[str | None, _Run] = {}
        #: plain successes noted and not yet packed, :data:`_FLAT` fields each (see note, _take_flat)
        self._flat: list[Any] = []
        #: packed records waiting for the write (kept while Redis is unreachable)
        self._sealed: list[_Segment] = []
        self._keys: dict[str, Any] = {}
        self._writer: asyncio.Task[None] | None = None
        self._last_write = 0.0
        self._interval_s = _MIN_INTERVAL_S  # until the next write (write_interval)
        self._failing = False
        self._packer: PythonRespSerializer | None = None  # see _run_unpacked
        self._names: set[str] = set()  # task names seen (rollup fields are capped at MAX_NAMES)
        self._warned_at = 0.0

    @classmethod
    def for_worker(cls, app: Celeriac, worker_id: str, broker: Any = None) -> Recorder | None:
        """The recorder of a worker of ``app``, or None when ``monitor_events`` is off or the broker
        is not on Redis. It uses the asyncio client of the worker's ``broker`` (one pool per worker),
        else its own."""
        url = getattr(app.broker, "url", None)  # a Redis broker's (the memory broker has none)
        if not app.conf.monitor_events or not isinstance(url, str) or not url.startswith(("redis", "unix")):
            return None
        from .._redis.client import async_client

        shared = getattr(broker, "shared_async", None)
        return cls(
            shared() if shared is not None else async_client(url, max_connections=2),
            app.conf.key_prefix,
            worker_id,
            MonitorSettings.from_app(app),
            owns_client=shared is None,
        )

    # ---- the task path (cheap) --------------------------------------------------------------------
    def note(self, d: Delivery, o: Outcome, message: Message | None, ran: bool = True) -> None:
        """Queue the outcome of delivery ``d`` for the next write, finished now (``ran``: False for an
        outcome that never ran, such as an expired or revoked message). A run started its runtime
        before now (the executor times it around the pool's call): no clock is read for the start.

        A plain success (the usual outcome) is appended to a flat list of plain values in this method
        (one ``list.extend``: cheaper on the task's path than appending to a run's columns one by one;
        :meth:`_take_flat` cuts the columns out of it); anything else is made a record in :meth:`_add`.
        Nothing keeps the outcome, delivery or message objects alive until the write: the garbage
        collector would scan them again and again.
        """
        if (
            o.state is _SUCCESS  # (an Enum's hash is Python code: compare by identity)
            and ran
            and message is not None
            and o.kind == "ack"
            and not message.parent_id
            and not message.extra
        ):
            # one call and one short-lived tuple per task: the columns are cut out of this list when
            # it is sealed (_take_flat; a run's start is its finish less its runtime)
            self._flat.extend(
                (o.task_name, d.queue, o.task_id, d.entry_id, _clock(), o.runtime_s, message.retries)
            )
            return
        now = _clock()
        self._add(d, o, message, now - o.runtime_s if ran else 0.0, now)

    def add(self, d: Delivery, o: Outcome, message: Message | None, started_s: float) -> None:
        """Queue the outcome of delivery ``d``, started at ``started_s`` (epoch s; 0: it never ran)
        and finished now: :meth:`note` with the start given (tools that record outcomes themselves)."""
        self._add(d, o, message, started_s, _clock())

    def _add(
        self, d: Delivery, o: Outcome, message: Message | None, started_s: float, finished_s: float
    ) -> None:
        kind = o.kind
        if kind == "ack":  # (an Enum's hash is Python code: compare by identity)
            st = o.state
            state = "SUCCESS" if st is _SUCCESS or st is None else st.value
        elif kind == "retry":
            state = "RETRY"
        elif kind == "dead":
            state = "DEAD"
        else:  # a hand-back (the process died): not an outcome, the delivery runs again
            return
        name = self._admit(o.task_name)
        retries = message.retries if message is not None else 0
        task_id = o.task_id or ""
        if state == "SUCCESS":
            # a workflow task's links (parent, chain, group, chord) ride along as its details; a
            # plain task has no parent and no extra fields: one attribute read each
            links = None
            if message is not None and (message.parent_id or message.extra):
                links = workflow_links(message)
            if links is None and started_s and task_id:
                # a plain success: into its task's run (the next ones of it take note's short way)
                run = self._runs.get(name)
                if run is None:
                    run = self._runs[name] = _Run(d.queue, name)
                if run.queue == d.queue:
                    run.add(task_id, d.entry_id, finished_s, o.runtime_s, retries, started_s)
                    return
        # times as the floats they are (converting costs the worker more than the bytes saved)
        row: tuple[Any, ...] = (task_id, name, state, d.entry_id, started_s, finished_s, o.runtime_s, retries)
        if state == "SUCCESS":
            if links is not None:
                row += (links,)
            self._pending.append((d.queue, row, None))
        else:
            row += (self._details(o, message),)
            # a failure keeps its message, for the dashboard's retry (it was in Redis while it waited)
            self._pending.append((d.queue, row, d.data if state in FAILED_STATES else None))

    def _admit(self, task_name: str | None) -> str:
        """The name a task's outcomes are recorded under: its own, or ``(other)`` once
        :data:`MAX_NAMES` names were seen (rollup fields are capped)."""
        name = task_name or "?"
        if name not in self._names:
            if len(self._names) >= MAX_NAMES:
                name = "(other)"
            self._names.add(name)
        return name

    @property
    def pending(self) -> bool:
        return bool(self._pending) or bool(self._runs) or bool(self._flat) or bool(self._sealed)

    def _unsealed(self) -> int:
        """Records made since the last seal."""
        return (
            len(self._pending) + len(self._flat) // _FLAT + sum(len(run.ids) for run in self._runs.values())
        )

    def _seal(self) -> None:
        """Pack the records made since the last seal (see :func:`_segments`)."""
        if self._pending or self._runs or self._flat:
            flat = self._take_flat()
            rows, self._pending = self._pending, []
            runs, self._runs = self._runs, {}
            self._sealed += _segments(rows, [*flat, *runs.values()])

    def _take_flat(self) -> list[_Run]:
        """The plain successes noted since the last seal (:meth:`note`'s flat list), as runs. The usual
        batch (one task name, one queue) is cut into its columns with no Python code per record; any
        other is grouped record by record (and a success without a task id made a record)."""
        flat, self._flat = self._flat, []
        n = len(flat) // _FLAT
        if not n:
            return []
        names, queues, ids = flat[0::_FLAT], flat[1::_FLAT], flat[2::_FLAT]
        name, queue = names[0], queues[0]
        if names.count(name) == n and queues.count(queue) == n and all(ids):
            run = _Run(queue, self._admit(name))
            run.ids, run.ready, run.finished, run.runtimes = (
                ids,
                flat[3::_FLAT],
                flat[4::_FLAT],
                flat[5::_FLAT],
            )
            retries = flat[6::_FLAT]
            if any(retries):
                run.retried = {i: r for i, r in enumerate(retries) if r}
            return [run]
        runs: dict[tuple[str, str], _Run] = {}
        for i in range(0, len(flat), _FLAT):
            task_name, queue, task_id, entry_id, finished_s, runtime_s, retries_ = flat[i : i + _FLAT]
            name = self._admit(task_name)
            started_s = finished_s - runtime_s
            if not task_id:  # (as _add makes it)
                row = ("", name, "SUCCESS", entry_id, started_s, finished_s, runtime_s, retries_)
                self._pending.append((queue, row, None))
                continue
            grouped = runs.get((name, queue))
            if grouped is None:
                grouped = runs[name, queue] = _Run(queue, name)
            grouped.add(task_id, entry_id, finished_s, runtime_s, retries_, started_s)
        return list(runs.values())

    def take_sealed(self) -> list[_Segment]:
        """Everything recorded and not yet written, packed, taken out of the recorder: for tools that
        write records themselves (:meth:`_calls_of` makes their script calls) and for tests."""
        self._seal()
        batch, self._sealed = self._sealed, []
        return batch

    def kick(self) -> None:
        """Start writing what is pending, unless a write is on its way (then those records go with the
        next one: group commit, like the settle's). Called by the settle loop with each batch of acks;
        never waits."""
        if self._unsealed() >= _SEAL_AT:
            self._seal()
        if (self._sealed or self._pending or self._runs or self._flat) and (
            self._writer is None or self._writer.done()
        ):
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    async def _write_all(self) -> None:
        while self._sealed or self._pending or self._runs or self._flat:
            # a write per interval at most (write_interval): a busy worker writes a few big batches
            # (a write's round trip and its script's fixed work cost more than a few records in it);
            # an idle one writes at once
            wait_s = self._last_write + self._interval_s - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            now = time.monotonic()
            waiting = _records(self._sealed) + self._unsealed()
            self._interval_s = write_interval(waiting, now - self._last_write)
            self._last_write = now
            await self.flush()
            if self._failing:
                return  # Redis refuses: the next kick (next batch of acks) tries again

    # ---- the settle loop --------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write what was added since the last flush. Never raises (see the module docstring).

        A write is one script call per queue (:meth:`_calls`); when some of them fail (one queue's
        slot unreachable in a cluster, a script error), only the records of those are kept for the next
        flush: the others are written, and writing them again would record them twice.
        """
        self._seal()
        if not self._sealed:
            return
        batch, self._sealed = self._sealed, []
        unwritten = batch
        error: BaseException | None = None
        try:
            unwritten, error = await self._write(self._calls_of(batch))
        except Exception as exc:  # Redis down, full, or anything else: keep the records, warn
            error = exc
        self.recorded += _records(batch) - _records(unwritten)
        if error is None:
            self._failing = False
            return
        self._failing = True
        self._sealed[:0] = unwritten
        waiting = _records(self._sealed)
        while waiting > _MAX_PENDING:  # the oldest go, a packed batch at a time
            gone = self._sealed.pop(0)
            waiting -= gone.n
            self.dropped += gone.n
        now = time.monotonic()
        if now - self._warned_at > 30:
            self._warned_at = now
            logger.warning("recording task outcomes failed (%s); %d waiting", error, waiting)

    async def _write(self, calls: list[_Call]) -> tuple[list[_Segment], BaseException | None]:
        """Run the script calls; return the records of the calls that failed, and the first error."""
        if len(calls) == 1:  # the usual write: one queue, one call (an error: the caller keeps it all)
            _items, keys, args = calls[0]
            if is_cluster(self.client):
                await RECORD.run(self.client, keys, args)
            else:
                await self._run_unpacked(keys, args)
            return [], None
        replies: list[Any]
        if is_cluster(self.client):
            # each call routed to its queue's slot (a cluster pipeline refuses scripts): concurrently
            # on the recorder's connections
            replies = await asyncio.gather(
                *(RECORD.run(self.client, keys, args) for _items, keys, args in calls), return_exceptions=True
            )
        else:
            pipe = self.client.pipeline(transaction=False)
            for _items, keys, args in calls:
                pipe.evalsha(RECORD.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
            for n, ((_items, keys, args), reply) in enumerate(zip(calls, replies)):
                if isinstance(reply, NoScriptError):  # a restarted Redis: load it, run that call again
                    try:
                        replies[n] = await RECORD.run(self.client, keys, args)
                    except Exception as exc:
                        replies[n] = exc
        unwritten: list[_Segment] = []
        error: BaseException | None = None
        for (items, _keys, _args), reply in zip(calls, replies):
            if isinstance(reply, BaseException):
                unwritten += items
                error = error or reply
        return unwritten, error

    async def _run_unpacked(self, keys: list[str], args: list[Any]) -> Any:
        """``RECORD.run``, with the command sent as redis-py's Python serializer packs it: the records
        (hundreds of kilobytes) go to the socket as they are, where hiredis's packer (the client's)
        copies every byte of them (about 0.3 us of the worker's CPU per record, measured)."""
        pool: Any = self.client.connection_pool  # (redis-py's pool and packer are untyped)
        packer: Any = self._packer
        if packer is None:
            packer = self._packer = PythonRespSerializer(6000, pool.get_encoder().encode)
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(packer.pack("EVALSHA", RECORD.sha, len(keys), *keys, *args))
            try:
                return await conn.read_response()
            except NoScriptError:  # a restarted Redis: load it, run the call again
                await conn.send_packed_command(packer.pack("SCRIPT", "LOAD", RECORD.text))
                await conn.read_response()
                await conn.send_packed_command(packer.pack("EVALSHA", RECORD.sha, len(keys), *keys, *args))
                return await conn.read_response()
        except BaseException as exc:
            if not isinstance(exc, ResponseError):
                # cut off mid-command (a dropped link, a cancelled write): a reply may still be on its
                # way, so the connection must not serve another command (as redis-py does itself)
                await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def close(self) -> None:
        """Write what is pending (one attempt), then close the connection (if the recorder's own)."""
        if self._writer is not None:
            await asyncio.wait([self._writer])
        await self.flush()
        if not self.owns_client:
            return
        try:
            await self.client.aclose()
        except Exception:  # closing a dead connection
            pass

    def _calls_of(self, batch: list[_Segment]) -> list[_Call]:
        """The script calls that write ``batch``: one per queue (up to :data:`_CALL_MAX` records
        each), with the packed records each one writes."""
        by_queue: dict[str, list[_Segment]] = {}
        for seg in batch:
            by_queue.setdefault(seg.queue, []).append(seg)
        calls: list[_Call] = []
        for queue, segs in by_queue.items():
            if _records(segs) <= _CALL_MAX:
                calls.append((segs, *self._call_of(queue, segs)))
                continue
            # the rollups of all the queue's records ride with its first call (its other calls carry
            # none): a rollup costs Redis one HINCRBY per field, however many records it counts
            for no, part in enumerate(_grouped(segs, _CALL_MAX)):
                calls.append((part, *self._call_of(queue, part, segs if no == 0 else [])))
        return calls

    def _call_of(
        self, queue: str, segs: list[_Segment], counted: list[_Segment] | None = None
    ) -> tuple[list[str], list[Any]]:
        """The script call that writes ``segs`` (one log entry per :data:`_CHUNK` records at most),
        counting ``counted`` in the rollups (default: ``segs`` themselves)."""
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = monitor_keys(self.prefix, queue)
        s = self.settings
        # log entries: whole packed batches, up to _CHUNK records each (a batch holds at most _CHUNK)
        entries = _grouped(segs, _CHUNK)
        records: list[bytes] = []
        id_parts: list[bytes] = []  # the records' lookup keys (keys.py: m:ix), by entry
        relations: list[list[str]] = []  # workflow links, both ways (see keys.py: m:rel), by entry
        linked = False
        failures: list[Any] = []
        for entry in entries:
            head = _array_header(sum(seg.items for seg in entry))
            if len(entry) == 1:
                records.append(head + entry[0].rows)
                id_parts.append(entry[0].ids)
            else:
                records.append(head + b"".join([seg.rows for seg in entry]))
                id_parts.append(b"".join([seg.ids for seg in entry]))
            members: list[str] = []
            for seg in entry:
                if seg.rare is not None:
                    seg_failures, seg_links = seg.rare
                    failures += seg_failures
                    members += seg_links
            relations.append(members)
            linked = linked or bool(members)
        # one rollup minute per batch (a batch spans milliseconds): the write's
        minute = int(time.time()) // 60
        counts: dict[tuple[str, str, int], int] = {}
        sums: dict[str, float] = {}
        for seg in segs if counted is None else counted:
            for key, c in seg.counts.items():
                counts[key] = counts.get(key, 0) + c
            for name, v in seg.sums.items():
                sums[name] = sums.get(name, 0.0) + v
        fields = _rollup_fields(minute, counts, sums) if counts else {}
        retention_s = s.retention_s
        ttl = {"m": MINUTE_TTL_S, "h": int(retention_s) + 86_400, "d": int(retention_s) + 86_400}
        roll_keys: list[str] = []
        roll_args: list[Any] = []
        total: Counter[str] = Counter()
        for (res, bucket_no), incr in fields.items():
            roll_keys.append(k.roll(res, bucket_no))
            roll_args += [ttl[res], len(incr)]
            for f, v in incr.items():
                roll_args += [f, v]
            if res == "d":
                total.update(incr)
        total_args: list[Any] = []
        for f, v in total.items():
            total_args += [f, v]
        now_ms = int(time.time() * 1000)
        keys = [k.log, k.ix, k.ixh, k.ents, k.fail, k.fgroups, k.total, k.fids, *roll_keys, k.rel, k.relt]
        args: list[Any] = [
            self.worker_id,
            len(entries),
            s.max_entries,
            s.max_failures,
            now_ms - int(retention_s * 1000),
            int(retention_s) + 86_400,
            len(failures) // 4,
            len(roll_keys),
            len(total),
            pack(relations) if linked else "",
            *records,
            *id_parts,
            *failures,
            *roll_args,
            *total_args,
        ]
        return keys, args

    def _details(self, o: Outcome, message: Message | None) -> dict[str, str]:
        s = self.settings
        details: dict[str, str] = {}
        rec = o.record
        exc = o.exc
        if rec is not None and rec.exc_type:
            details["exc"] = rec.exc_type
            details["msg"] = truncate(rec.exc_message or "", _MAX_MESSAGE_CHARS)
            if rec.traceback:
                details["tb"] = rec.traceback[-_MAX_TRACEBACK_CHARS:]
        elif exc is not None:
            details["exc"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
            details["msg"] = truncate(str(exc), _MAX_MESSAGE_CHARS)
            if exc.__traceback__ is not None:
                details["tb"] = format_traceback(exc)[-_MAX_TRACEBACK_CHARS:]
        if o.reason:
            details["reason"] = truncate(o.reason, _MAX_MESSAGE_CHARS)
        if message is not None:
            details["args"], details["kwargs"] = show_args(
                message.args, message.kwargs, s.max_arg_chars, self._redact
            )
            links = workflow_links(message)
            if links:
                details.update(links)
        return details

    # ---- heartbeat ----------------------------------------------------------------------------------
    def heartbeat_fields(self, running: Iterable[Delivery]) -> dict[str, str]:
        """What the worker's heartbeat adds: its running tasks (the 20 taken first: id, name, when the
        message became ready) and recording counters. Task ids and names are read from the messages
        here, every few seconds, rather than noted for every task."""
        import json

        from ..message import peek

        tasks = []
        for d in sorted(running, key=lambda d: _entry_ms(d.entry_id))[:20]:
            found = peek(d.data)
            if found is not None:
                tasks.append([found[0], found[1], _entry_ms(d.entry_id) / 1000])
        return {
            "tasks": json.dumps(tasks),
            "events": "on",
            "events_recorded": str(self.recorded),
            "events_dropped": str(self.dropped),
        }


class _Segment:
    """Records of one queue packed for the write (at most :data:`_CHUNK`; usually one batch of acks):
    ``rows`` is the msgpack encoding of the records, ``items`` elements of a msgpack array without
    its header (a record each, or one block of them: see :mod:`celeriac.monitor.record`), ``ids``
    their lookup keys (:func:`~celeriac.monitor.keys.id_keys`),
    ``counts`` and ``sums`` their rollup counts (:func:`_rollup_counts`), ``rare`` None or, when
    some records are failures or workflow tasks: (failure quadruples, workflow links)."""

    __slots__ = ("counts", "ids", "items", "n", "queue", "rare", "rows", "sums")

    def __init__(
        self,
        queue: str,
        n: int,
        rows: bytes,
        ids: bytes,
        counts: dict[tuple[str, str, int], int],
        sums: dict[str, float],
        rare: tuple[list[Any], list[str]] | None,
        items: int | None = None,
    ) -> None:
        self.queue, self.n, self.rows, self.ids = queue, n, rows, ids
        self.counts, self.sums, self.rare = counts, sums, rare
        self.items = n if items is None else items

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Segment) and all(
            getattr(self, a) == getattr(other, a) for a in self.__slots__
        )

    __hash__ = None  # type: ignore[assignment]


def _array_header(n: int) -> bytes:
    """The header of a msgpack array of ``n`` elements."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _elements(packed: bytes, n: int) -> bytes:
    """The elements of the packed msgpack array ``packed`` of ``n`` elements (its header cut off)."""
    return packed[1 if n < 16 else 3 if n < 0x10000 else 5 :]


def _grouped(segs: list[_Segment], most: int) -> list[list[_Segment]]:
    """``segs`` in order, cut into groups of at most ``most`` records (a segment is never split; one
    larger than ``most`` is a group of its own)."""
    groups: list[list[_Segment]] = [[]]
    n = 0
    for seg in segs:
        if n + seg.n > most and groups[-1]:
            groups.append([])
            n = 0
        groups[-1].append(seg)
        n += seg.n
    return groups


def write_interval(records: int, elapsed_s: float) -> float:
    """The least time before the next write, after one of ``records`` made in ``elapsed_s``: the time
    their rate takes to make ``_WRITE_RECORDS``, within ``_MIN_INTERVAL_S`` and ``_MAX_INTERVAL_S``.

    Why: a worker that runs slower tasks (CPU-bound ones in processes) would otherwise write small
    batches at the least interval, whose fixed cost (the round trip, the script's trims, TTLs and
    rollup counters) outweighs the records in them, in the worker and in Redis. The price: the
    dashboard lags such a worker by up to ``_MAX_INTERVAL_S``. A worker whose first outcome comes
    after an idle spell writes it at once, then waits up to ``_MAX_INTERVAL_S`` before the next write.
    """
    if records <= 0:
        return _MAX_INTERVAL_S
    return min(_MAX_INTERVAL_S, max(_MIN_INTERVAL_S, _WRITE_RECORDS * elapsed_s / records))


def _records(segs: list[_Segment]) -> int:
    return sum(seg.n for seg in segs)


class _Run:
    """The plain successes of one task from one queue since the last seal, a column each: what a
    block holds (:func:`~celeriac.monitor.record.block`). Cut out of :meth:`Recorder.note`'s flat list
    by strided slices, or appended to by :meth:`add`; packing the columns costs no transposition."""

    __slots__ = ("finished", "ids", "name", "queue", "ready", "retried", "runtimes", "starts")

    def __init__(self, queue: str, name: str) -> None:
        self.queue, self.name = queue, name
        self.ids: list[str] = []
        self.ready: list[str] = []  # the deliveries' entry ids
        # lists, not arrays: array.append parses its argument the slow way (PyArg_Parse)
        self.finished: list[float] = []
        self.runtimes: list[float] = []
        #: index -> retries, of the few that are not 0
        self.retried: dict[int, int] = {}
        #: index -> started, of the few that did not start their runtime before they finished
        #: (:meth:`Recorder.add` given another start)
        self.starts: dict[int, float] = {}

    def add(
        self, task_id: str, entry_id: str, finished_s: float, runtime_s: float, retries: int, started_s: float
    ) -> None:
        """One more success (:meth:`Recorder.add`'s; :meth:`Recorder.note` notes the usual one in its
        flat list instead)."""
        i = len(self.ids)
        self.ids.append(task_id)
        self.ready.append(entry_id)
        self.finished.append(finished_s)
        self.runtimes.append(runtime_s)
        if started_s != finished_s - runtime_s:
            self.starts[i] = started_s
        if retries:
            self.retried[i] = retries

    def rows(self, start: int, end: int) -> list[_Pending]:
        """Records ``start`` to ``end`` as rows (too few for a block, or ids a block cannot hold)."""
        out: list[_Pending] = []
        for i in range(start, end):
            finished_s, runtime_s = self.finished[i], self.runtimes[i]
            row = (
                self.ids[i],
                self.name,
                "SUCCESS",
                self.ready[i],
                self.starts.get(i, finished_s - runtime_s),
                finished_s,
                runtime_s,
                self.retried.get(i, 0),
            )
            out.append((self.queue, row, None))
        return out


def _segments(rows: list[_Pending], runs: Iterable[_Run] = ()) -> list[_Segment]:
    """``rows`` and ``runs`` packed (:class:`_Segment`): a run as blocks of up to :data:`_CHUNK`
    records (one, usually), the rest as records, by queue, up to :data:`_CHUNK` each. So the records
    of one batch are grouped by task and kind, not in the order they ended."""
    out: list[_Segment] = []
    loose = list(rows)
    for run in runs:
        n = len(run.ids)
        if n < _MIN_BLOCK:  # a block would cost more
            loose += run.rows(0, n)
            continue
        for start in range(0, n, _CHUNK):
            end = min(n, start + _CHUNK)
            seg = _block_segment(run, start, end)
            if seg is None:
                loose += run.rows(start, end)
            else:
                out.append(seg)
    if not loose:
        return out
    queues = set(map(_QUEUE, loose))
    if len(queues) == 1:  # the usual batch: one queue, no Python code per record
        groups = {queues.pop(): loose}
    else:
        groups = {}
        for item in loose:
            groups.setdefault(item[0], []).append(item)
    for queue, group in groups.items():
        for start in range(0, len(group), _CHUNK):
            out.append(_segment(queue, group if len(group) <= _CHUNK else group[start : start + _CHUNK]))
    return out


def _block_segment(run: _Run, start: int, end: int) -> _Segment | None:
    """Records ``start`` to ``end`` of ``run`` as one block, or None when an id or entry id holds a
    NUL (the block's separator). Only C-level passes over the columns."""
    n = end - start
    whole = start == 0 and end == len(run.ids)
    ids = run.ids if whole else run.ids[start:end]
    ids_text = "\x00".join(ids)
    ready_text = "\x00".join(run.ready if whole else run.ready[start:end])
    if ids_text.count("\x00") != n - 1 or ready_text.count("\x00") != n - 1:
        return None
    finished = run.finished if whole else run.finished[start:end]
    runtimes = run.runtimes if whole else run.runtimes[start:end]
    retries = b""
    if any(start <= i < end for i in run.retried):
        counts = [0] * n
        for i, r in run.retried.items():
            if start <= i < end:
                counts[i - start] = r
        retries = struct.pack(f"<{n}I", *counts)
    if any(start <= i < end for i in run.starts):  # a start given to add(): the started column too
        started = list(map(sub, finished, runtimes))
        for i, started_s in run.starts.items():
            if start <= i < end:
                started[i - start] = started_s
        times = struct.pack(f"<{3 * n}d", *started, *finished, *runtimes)
    else:  # every run started its runtime before its finish: readers compute the start
        times = struct.pack(f"<{2 * n}d", *finished, *runtimes)
    name = run.name
    packed = block(n, name, "SUCCESS", ids_text, ready_text, times, retries)
    counts_ = _one_kind_counts(name, "SUCCESS", runtimes)
    return _Segment(run.queue, n, packed, id_keys(ids, ids_text), counts_, {name: sum(runtimes)}, None, 1)


def _segment(queue: str, items: list[_Pending]) -> _Segment:
    """``items`` (one queue's) packed as records (a msgpack array's elements)."""
    # Per record, only C-level passes (map, zip, Counter): this runs for every task a worker records
    # that is not in a block.
    rows = list(map(_ROW, items))
    rare: tuple[list[Any], list[str]] | None = None
    if max(map(len, rows)) > 8:  # failures and workflow tasks: records with details
        failures: list[Any] = []
        for _queue, row, message in compress(items, map(is_not, map(_MESSAGE, items), repeat(None))):
            # a failure: its full record, for the failures page
            failures += [row[0], pack([row]), f"{row[1]}\x00{row[8].get('exc', '')}", message]
        links: list[str] = []
        for row in rows:
            if len(row) > 8:
                details = row[8]
                if "parent" in details or "group" in details or "chord" in details or "body_of" in details:
                    links += relation_members(row[0], details)
        rare = (failures, links) if failures or links else None
    counts, sums = _rollup_counts(rows)
    packed = _elements(pack(rows), len(rows))
    return _Segment(queue, len(rows), packed, id_keys(list(map(_TASK_ID, rows))), counts, sums, rare)


#: one script call: the packed records it writes, its keys and its arguments
_Call = tuple[list[_Segment], list[str], list[Any]]
_TASK_ID, _NAME, _STATE, _STARTED, _RUNTIME = (itemgetter(i) for i in (0, 1, 2, 4, 6))
_clock = time.time  # the finish of a run (a global read per call, not a module attribute)
_MIN_BLOCK = 8  # fewer successes of one task in a batch are packed as records (a block costs more)
_FIRST_BOUND_S = RUNTIME_BUCKETS_S[0]  # a runtime up to it (inclusive) is in bucket 0 (bisect_left)
_BUCKET = partial(bisect_left, RUNTIME_BUCKETS_S)  # runtime s -> its histogram bucket
_QUEUE, _ROW = itemgetter(0), itemgetter(1)  # of a pending item
_MESSAGE = itemgetter(2)  # of a pending item: the message kept with a failure, else None
#: fields per plain success in Recorder._flat: task name, queue, task id, entry id, finished, runtime, retries
_FLAT = 7


def _rollup_counts(rows: list[tuple[Any, ...]]) -> tuple[dict[tuple[str, str, int], int], dict[str, float]]:
    """``(name, state, runtime bucket) -> n`` (bucket -1: never ran) and ``name -> runtime s`` of
    the runs among ``rows``."""
    runtimes = list(map(_RUNTIME, rows))
    if all(map(_STARTED, rows)):  # every one ran (the usual batch): C-level passes only
        if len(set(map(_NAME, rows))) == 1 and len(set(map(_STATE, rows))) == 1:
            name = rows[0][1]
            return _one_kind_counts(name, rows[0][2], runtimes), {name: sum(runtimes)}
        buckets = map(_BUCKET, runtimes)
        names = list(map(_NAME, rows))
        states = list(map(_STATE, rows))
        counts: dict[tuple[str, str, int], int] = Counter(zip(names, states, buckets))
        if len(set(names)) == 1:
            return counts, {names[0]: sum(runtimes)}
        sums: dict[str, float] = {}
        for name, runtime_s in zip(names, runtimes):
            sums[name] = sums.get(name, 0.0) + runtime_s
        return counts, sums
    counts, sums = {}, {}
    for name, state, started_s, runtime_s in zip(
        map(_NAME, rows), map(_STATE, rows), map(_STARTED, rows), runtimes
    ):
        if started_s:
            key = (name, state, bisect_left(RUNTIME_BUCKETS_S, runtime_s))
            sums[name] = sums.get(name, 0.0) + runtime_s
        else:  # never ran: counted, no runtime
            key = (name, state, -1)
        counts[key] = counts.get(key, 0) + 1
    return counts, sums


def _one_kind_counts(name: str, state: str, runtimes: Sequence[float]) -> dict[tuple[str, str, int], int]:
    """The rollup counts of runs of one task name and state: the runtime buckets alone are counted
    (ints hash fast), or, when every run fell in the first bucket (short tasks), just the runs."""
    if max(runtimes) <= _FIRST_BOUND_S:
        return {(name, state, 0): len(runtimes)}
    return {(name, state, b): c for b, c in Counter(map(_BUCKET, runtimes)).items()}


def _rollup_fields(
    minute: int, counts: dict[tuple[str, str, int], int], sums: dict[str, float]
) -> dict[tuple[str, int], Counter[str]]:
    """Field increments per rollup bucket (resolution, bucket number) of the batch's ``minute``."""
    incr: Counter[str] = Counter()
    for (name, state, bucket), n in counts.items():
        for who in (name, ALL):
            incr[count_field(who, state)] += n
            if bucket >= 0:
                incr[bucket_field(who, bucket)] += n
    for name, total_s in sums.items():
        for who in (name, ALL):
            incr[sum_field(who)] += round(total_s * 1_000_000)
    second = minute * 60
    return {(res, second // length): incr for res, length in RESOLUTIONS.items()}


def workflow_links(message: Message) -> dict[str, str] | None:
    """What a message says about its place in a workflow, as record details: ``parent``, ``root``,
    ``next`` (a chain's next step, or the group it starts), ``links`` (callbacks, space-separated),
    ``group``/``gi`` (group id, index), ``chord``/``ci`` (chord id, header index), ``body_of`` (the
    chord whose body this is, when it takes the header's values). None for a plain task."""
    out: dict[str, str] = {}
    if message.parent_id:
        out["parent"] = message.parent_id
    if message.root_id:
        out["root"] = message.root_id
    w = message.extra.get("w") if message.extra else None
    if isinstance(w, dict):
        rest = w.get("c")
        if isinstance(rest, list) and rest:
            nid = _sig_id(rest[0])
            if nid:
                out["next"] = nid
        callbacks = w.get("k")
        if isinstance(callbacks, list) and callbacks:
            ids = [i for i in (_sig_id(cb) for cb in callbacks[:_MAX_LINKS]) if i]
            if ids:
                out["links"] = " ".join(ids)
        if w.get("g") is not None:
            out["group"], out["gi"] = _id(w["g"]), str(w.get("i") or 0)
        ptr = w.get("d")
        if isinstance(ptr, list) and len(ptr) >= 2:
            out["chord"], out["ci"] = _id(ptr[0]), str(ptr[1])
        if isinstance(w.get("r"), str):
            out["body_of"] = w["r"]
    return out or None


def relation_members(task_id: str, details: dict[str, str]) -> list[str]:
    """The ``m:rel`` members of one record (see keys.py): what lets its parent, group or chord list it."""
    out = []
    if "parent" in details:
        out.append(f"{details['parent']}\x00c\x00\x00{task_id}")
    if "group" in details:
        out.append(f"{details['group']}\x00g\x00{int(details.get('gi') or 0):08d}\x00{task_id}")
    if "chord" in details:
        out.append(f"{details['chord']}\x00h\x00{int(details.get('ci') or 0):08d}\x00{task_id}")
    if "body_of" in details:
        out.append(f"{details['body_of']}\x00b\x00\x00{task_id}")
    return out


_MAX_LINKS = 20


def _sig_id(sig: Any) -> str | None:
    opts = sig.get("options") if isinstance(sig, dict) else None
    tid = opts.get("task_id") if isinstance(opts, dict) else None
    return str(tid) if tid else None


def _id(raw: Any) -> str:
    """A workflow id from its wire form (a canonical UUID travels as its 16 bytes)."""
    if isinstance(raw, bytes) and len(raw) == 16:
        return str(uuid.UUID(bytes=raw))
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _entry_ms(entry_id: str) -> int:
    ms = entry_id.partition("-")[0]
    return int(ms) if ms.isdigit() else 0


def process_fields() -> dict[str, str]:
    """Heartbeat fields about the worker process, whatever the recording setting: resident size."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return {"rss_kb": str(pages * os.sysconf("SC_PAGE_SIZE") // 1024)}
    except (OSError, ValueError, IndexError):
        return {}
