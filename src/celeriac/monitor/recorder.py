"""The worker side of monitoring: task outcomes into bounded Redis structures, batched with the acks.

The worker calls :meth:`Recorder.add` when an outcome is known (a list append: nothing is encoded on
the task's path). The worker's settle loop calls :meth:`Recorder.kick` with each batch of acks: it
starts a write unless one is on its way, so records group like the acks do and the settle never
waits for them. A write sends all records of a queue in one ``record.lua`` call (one log entry per
batch, rollups summed in the worker first), in the queue's hash slot, on the recorder's own
connection.

Recording is best effort: a flush that fails keeps its records for the next one (up to
``_MAX_PENDING``, then the oldest are dropped and counted) and never delays or fails an ack. A
delivery whose lease was lost (fenced) may be recorded by both workers that ran it: both runs happened.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from ..execution import format_traceback
from ..states import TaskState
from .keys import MINUTE_TTL_S, RESOLUTIONS, monitor_keys
from .record import FAILED_STATES, pack, redact_pattern, show_args, truncate
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
#: a recorded outcome waiting to be written: (queue, record row, message bytes of a failure or None)
_Pending = tuple[str, tuple[Any, ...], "bytes | None"]  # records kept while Redis is unreachable
_CHUNK = 1000  # records per script call (bounds the script's argument lists)
_MIN_INTERVAL_S = 0.1  # between two writes of one worker (the dashboard lags by at most this)
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
        client: an asyncio Redis client (the recorder's own; closed by :meth:`close`).
        prefix: the app's key prefix.
        worker_id: recorded with every batch.
        settings: bounds and redaction.
    """

    def __init__(
        self, client: redis.asyncio.Redis, prefix: str, worker_id: str, settings: MonitorSettings
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.worker_id = worker_id
        self.settings = settings
        self.dropped = 0  # records lost to a long Redis outage (bounded buffer)
        self.recorded = 0
        self._redact: re.Pattern[str] = redact_pattern(settings.redact)
        # (delivery, outcome, message or None, started epoch s, finished epoch s)
        self._pending: list[_Pending] = []
        self._keys: dict[str, Any] = {}
        self._writer: asyncio.Task[None] | None = None
        self._last_write = 0.0
        self._failing = False
        self._names: set[str] = set()  # task names seen (rollup fields are capped at MAX_NAMES)
        self._warned_at = 0.0

    @classmethod
    def for_worker(cls, app: Celeriac, worker_id: str) -> Recorder | None:
        """The recorder of a worker of ``app``, or None when ``monitor_events`` is off or the broker
        is not on Redis."""
        url = getattr(app.broker, "url", None)  # a Redis broker's (the memory broker has none)
        if not app.conf.monitor_events or not isinstance(url, str) or not url.startswith(("redis", "unix")):
            return None
        from .._redis.client import async_client

        return cls(
            async_client(url, max_connections=2),
            app.conf.key_prefix,
            worker_id,
            MonitorSettings.from_app(app),
        )

    # ---- the task path (cheap) --------------------------------------------------------------------
    def add(self, d: Delivery, o: Outcome, message: Message | None, started_s: float) -> None:
        """Queue the outcome of delivery ``d`` for the next write (``started_s``: 0 when it never ran).

        The record is built here, as a tuple of plain values: keeping the outcome, delivery and
        message objects alive until the write would make the garbage collector scan them again and
        again (they would outlive a young-generation collection).
        """
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
        name = o.task_name or "?"
        if name not in self._names:
            if len(self._names) >= MAX_NAMES:
                name = "(other)"
            self._names.add(name)
        retries = message.retries if message is not None else 0
        # times as the floats they are (converting costs the worker more than the bytes saved)
        if state == "SUCCESS":
            row: tuple[Any, ...] = (
                o.task_id or "",
                name,
                state,
                d.entry_id,
                started_s,
                time.time(),
                o.runtime_s,
                retries,
            )
            self._pending.append((d.queue, row, None))
        else:
            details = self._details(o, message)
            row = (
                o.task_id or "",
                name,
                state,
                d.entry_id,
                started_s,
                time.time(),
                o.runtime_s,
                retries,
                details,
            )
            # a failure keeps its message, for the dashboard's retry (it was in Redis while it waited)
            self._pending.append((d.queue, row, d.data if state in FAILED_STATES else None))

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def kick(self) -> None:
        """Start writing what is pending, unless a write is on its way (then those records go with the
        next one: group commit, like the settle's). Called by the settle loop with each batch of acks;
        never waits."""
        if self._pending and (self._writer is None or self._writer.done()):
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    async def _write_all(self) -> None:
        while self._pending:
            # at most one write per _MIN_INTERVAL_S: a busy worker writes a few big batches (a
            # round trip costs the worker more than the records in it); an idle one writes at once
            wait_s = self._last_write + _MIN_INTERVAL_S - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            self._last_write = time.monotonic()
            await self.flush()
            if self._failing:
                return  # Redis refuses: the next kick (next batch of acks) tries again

    # ---- the settle loop --------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write what was added since the last flush. Never raises (see the module docstring)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            calls = self._calls(batch)
            if len(calls) == 1 or is_cluster(self.client):
                # one call per queue, each routed to its queue's slot (a cluster pipeline refuses
                # scripts): concurrently on the recorder's connections
                await asyncio.gather(*(RECORD.run(self.client, keys, args) for keys, args in calls))
            else:
                pipe = self.client.pipeline(transaction=False)
                for keys, args in calls:
                    pipe.evalsha(RECORD.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
                for (keys, args), reply in zip(calls, replies):
                    if isinstance(reply, NoScriptError):  # a restarted Redis: load it, run that call again
                        await RECORD.run(self.client, keys, args)
                    elif isinstance(reply, Exception):
                        raise reply
            self.recorded += len(batch)
            self._failing = False
        except Exception as exc:  # Redis down, full, or anything else: keep the records, warn
            self._failing = True
            self._pending[:0] = batch
            over = len(self._pending) - _MAX_PENDING
            if over > 0:
                del self._pending[:over]
                self.dropped += over
            now = time.monotonic()
            if now - self._warned_at > 30:
                self._warned_at = now
                logger.warning("recording task outcomes failed (%s); %d waiting", exc, len(self._pending))

    async def close(self) -> None:
        """Write what is pending (one attempt), then close the connection."""
        if self._writer is not None:
            await asyncio.wait([self._writer])
        await self.flush()
        try:
            await self.client.aclose()
        except Exception:  # closing a dead connection
            pass

    def _calls(self, batch: list[_Pending]) -> list[tuple[list[str], list[Any]]]:
        by_queue: dict[str, list[_Pending]] = {}
        for item in batch:
            by_queue.setdefault(item[0], []).append(item)
        calls = []
        for queue, items in by_queue.items():
            for start in range(0, len(items), _CHUNK):
                calls.append(self._call(queue, items[start : start + _CHUNK]))
        return calls

    def _call(self, queue: str, items: list[_Pending]) -> tuple[list[str], list[Any]]:
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = monitor_keys(self.prefix, queue)
        s = self.settings
        rows: list[tuple[Any, ...]] = []
        retried: list[int] = []  # positions of tasks that ran before (timeline links)
        failures: list[Any] = []
        # (name, state, bucket) -> n and name -> runtime s; plain dicts: this loop
        # runs for every task, and a Counter's missing-key path is Python code
        counts: dict[tuple[str, str, int], int] = {}
        sums: dict[str, float] = {}
        bounds_s = RUNTIME_BUCKETS_S
        # one rollup minute per batch (a batch spans milliseconds): the write's
        minute = int(time.time()) // 60
        for _queue, row, message in items:
            task_id, name, state = row[0], row[1], row[2]
            if message is not None:
                details = row[8]
                failures += [task_id, pack([row]), f"{name}\x00{details.get('exc', '')}", message]
            rows.append(row)
            if row[7]:
                retried.append(len(rows) - 1)
            if row[4]:
                runtime_s = row[6]
                key = (name, state, bisect_left(bounds_s, runtime_s))
                sums[name] = sums.get(name, 0.0) + runtime_s
            else:  # never ran: counted, no runtime
                key = (name, state, -1)
            counts[key] = counts.get(key, 0) + 1
        fields = _rollup_fields(minute, counts, sums)
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
        keys = [k.log, k.ids, k.fail, k.fgroups, k.total, k.fids, *roll_keys]
        args: list[Any] = [
            self.worker_id,
            pack(rows),
            "",
            s.max_entries,
            s.max_failures,
            now_ms - int(retention_s * 1000),
            int(retention_s) + 86_400,
            len(failures) // 4,
            len(roll_keys),
            len(total),
            pack(retried) if retried else "",
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
            if message.parent_id:
                details["parent"] = message.parent_id
            if message.root_id:
                details["root"] = message.root_id
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
