"""The worker side of monitoring: task outcomes into bounded Redis structures, batched with the acks.

The worker calls :meth:`Recorder.started` when a task starts and :meth:`Recorder.add` when its outcome
is known (a dict insert and a list append: nothing is encoded on the task's path). The worker's
settle loop calls :meth:`Recorder.flush` for each batch of acks, concurrently with the settle itself:
all records of a queue go to Redis in one ``record.lua`` call (one log entry per batch, rollups summed
in the worker first), in the queue's hash slot, on the recorder's own connection.

Recording is best effort: a flush that fails keeps its records for the next one (up to
``_MAX_PENDING``, then the oldest are dropped and counted) and never delays or fails an ack. A
delivery whose lease was lost (fenced) may be recorded by both workers that ran it: both runs happened.
"""

from __future__ import annotations

import logging
import os
import re
import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from ..states import TaskState
from .keys import MINUTE_TTL_S, RESOLUTIONS, monitor_keys
from .record import FAILED_STATES, pack, redact_pattern, show_args, truncate
from .rollup import ALL, MAX_NAMES, RUNTIME_BUCKETS_S, bucket_field, count_field, sum_field
from .script import RECORD

if TYPE_CHECKING:
    import redis.asyncio

    from ..app import Celeriac
    from ..broker.base import Delivery
    from ..message import Message
    from ..worker.executor import Outcome

logger = logging.getLogger("celeriac.monitor")

_SUCCESS = TaskState.SUCCESS
_MAX_PENDING = 50_000  # records kept while Redis is unreachable
_CHUNK = 500  # records per script call (bounds the script's argument lists)
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
        self._pending: list[tuple[Delivery, Outcome, Message | None, float, float]] = []
        self._running: dict[str, tuple[str, float]] = {}
        self._keys: dict[str, Any] = {}
        self._names: set[str] = set()  # task names seen (rollup fields are capped at MAX_NAMES)
        self._warned_at = 0.0

    @classmethod
    def for_worker(cls, app: Celeriac, worker_id: str) -> Recorder | None:
        """The recorder of a worker of ``app``, or None when ``monitor_events`` is off or the broker
        is not on Redis."""
        if not app.conf.monitor_events or not app.conf.broker_url.startswith(("redis", "rediss", "unix")):
            return None
        from .._redis import async_client

        return cls(
            async_client(app.conf.broker_url, max_connections=2),
            app.conf.key_prefix,
            worker_id,
            MonitorSettings.from_app(app),
        )

    # ---- the task path (cheap) --------------------------------------------------------------------
    def started(self, task_id: str, name: str, started_s: float) -> None:
        """A task started running (shown in the worker's heartbeat until its outcome)."""
        self._running[task_id] = (name, started_s)

    def add(self, d: Delivery, outcome: Outcome, message: Message | None, started_s: float) -> None:
        """Queue the outcome of delivery ``d`` for the next flush (``started_s``: 0 when it never ran)."""
        if outcome.task_id is not None:
            self._running.pop(outcome.task_id, None)
        if outcome.kind == "release":  # not an outcome: the delivery runs again
            return
        self._pending.append((d, outcome, message, started_s, time.time()))

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    # ---- the settle loop --------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write what was added since the last flush. Never raises (see the module docstring)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            calls = self._calls(batch)
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
        except Exception as exc:  # Redis down, full, or anything else: keep the records, warn
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
        await self.flush()
        try:
            await self.client.aclose()
        except Exception:  # closing a dead connection
            pass

    def _calls(
        self, batch: list[tuple[Delivery, Outcome, Message | None, float, float]]
    ) -> list[tuple[list[str], list[Any]]]:
        by_queue: dict[str, list[tuple[Delivery, Outcome, Message | None, float, float]]] = {}
        for item in batch:
            by_queue.setdefault(item[0].queue, []).append(item)
        calls = []
        for queue, items in by_queue.items():
            for start in range(0, len(items), _CHUNK):
                calls.append(self._call(queue, items[start : start + _CHUNK]))
        return calls

    def _call(
        self, queue: str, items: list[tuple[Delivery, Outcome, Message | None, float, float]]
    ) -> tuple[list[str], list[Any]]:
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = monitor_keys(self.prefix, queue)
        s = self.settings
        rows: list[tuple[Any, ...]] = []
        ids: list[str] = []
        retried: list[int] = []  # positions in ids of tasks that ran before (timeline links)
        failures: list[Any] = []
        # (name, state, bucket) -> n and name -> runtime s; plain dicts: this loop
        # runs for every task, and a Counter's missing-key path is Python code
        counts: dict[tuple[str, str, int], int] = {}
        sums: dict[str, float] = {}
        names = self._names
        bounds_s = RUNTIME_BUCKETS_S
        # one rollup minute per batch (a batch spans milliseconds): the flush's
        minute = int(time.time()) // 60
        for d, o, message, started_s, finished_s in items:
            name = o.task_name or "?"
            if name not in names:
                if len(names) >= MAX_NAMES:
                    name = "(other)"
                names.add(name)
            kind = o.kind
            if kind == "retry":
                state = "RETRY"
            elif kind == "dead":
                state = "DEAD"
            else:  # (an Enum's hash is Python code: compare by identity)
                st = o.state
                state = "SUCCESS" if st is _SUCCESS or st is None else st.value
            runtime_s = o.runtime_s
            retries = message.retries if message is not None else 0
            task_id = o.task_id or ""
            # times as the floats they are (converting costs the worker more than the bytes saved)
            if state == "SUCCESS":
                row: tuple[Any, ...] = (
                    task_id,
                    name,
                    state,
                    d.entry_id,
                    started_s,
                    finished_s,
                    runtime_s,
                    retries,
                )
            else:
                details = self._details(o, message)
                row = (task_id, name, state, d.entry_id, started_s, finished_s, runtime_s, retries, details)
                if state in FAILED_STATES:
                    # the message itself, for the dashboard's retry (already in Redis while it waited)
                    failures += [task_id, pack([row]), f"{name}\x00{details.get('exc', '')}", d.data]
            rows.append(row)
            if retries:
                retried.append(len(ids))
            ids.append(task_id)
            if started_s:
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
            pack(ids),
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
            from ..worker.executor import format_traceback

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
    def heartbeat_fields(self) -> dict[str, str]:
        """What the worker's heartbeat adds: running tasks (the 20 oldest) and recording counters."""
        import json

        running = sorted(self._running.items(), key=lambda kv: kv[1][1])[:20]
        return {
            "tasks": json.dumps([[tid, name, round(at, 3)] for tid, (name, at) in running]),
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


def process_fields() -> dict[str, str]:
    """Heartbeat fields about the worker process, whatever the recording setting: resident size."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return {"rss_kb": str(pages * os.sysconf("SC_PAGE_SIZE") // 1024)}
    except (OSError, ValueError, IndexError):
        return {}
