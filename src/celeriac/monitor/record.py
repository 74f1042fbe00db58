"""One recorded task outcome: its compact encoding in Redis and its decoded form for readers.

A log entry holds the records of one recorded batch as one msgpack array; each record is a positional
array (field names would cost more bytes than most values)::

    [task_id, name, state, ready_id, started_s, finished_s, runtime_s, retries]            success
    [task_id, name, state, ready_id, started_s, finished_s, runtime_s, retries, details]

``details`` (a map) exists only for outcomes that are not a plain success: exception type, message
and traceback, reason, and the arguments, truncated and redacted (``exc``, ``msg``, ``tb``,
``reason``, ``args``, ``kwargs``, ``parent``, ``root``). ``ready_id`` is the message's stream entry id
(``<ms>-<seq>``: when it became ready); times are epoch seconds (floats: the worker writes them as
it has them), ``started_s`` 0 for a message that never ran.

A log entry may also hold *blocks* among its records: a block is a map that holds plain successes of
one task name in columns, which costs the worker far less to pack than one array per record (the
usual batch is one block)::

    {"n": count, "name": name, "state": "SUCCESS",
     "id": task ids joined by NUL, "ready": ready ids joined by NUL,
     "t": float64 little-endian: the n finished_s, then the n runtime_s (each started_s is its
          finished_s - runtime_s), or, when some run started otherwise, the n started_s first,
     "retries": uint32 little-endian, n of them (absent: all 0)}

Readers expand blocks in place (:func:`entry_rows`), so a record's index in its entry counts the
records of the blocks before it.

States: the task states (``SUCCESS``, ``FAILURE``, ``EXPIRED``, ``REVOKED``) plus ``RETRY`` (the run
failed and a retry was parked) and ``DEAD`` (dead-lettered).
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

#: record states that count as failures in rollups and the failures index
FAILED_STATES = frozenset({"FAILURE", "DEAD"})
#: every state a record may have, in display order
STATES = ("SUCCESS", "FAILURE", "RETRY", "DEAD", "EXPIRED", "REVOKED")

#: kwargs whose names match this are shown as ``'***'`` (extend with ``monitor_redact``)
DEFAULT_REDACT = ("password", "passwd", "secret", "token", "api_key", "apikey", "authorization", "cookie")


@dataclass
class TaskRecord:
    """A task outcome as read back from Redis."""

    task_id: str
    name: str
    state: str
    queue: str
    worker: str
    queued_ms: int
    started_ms: int
    finished_ms: int
    runtime_s: float
    retries: int
    details: dict[str, str] = field(default_factory=dict)
    #: where it lives: ``<log or fail entry id>`` and the index inside that entry
    entry_id: str = ""
    index: int = 0

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES

    @property
    def exception_type(self) -> str:
        return self.details.get("exc", "")

    @property
    def wait_s(self) -> float | None:
        """Time from ready to started, when both are known."""
        if self.queued_ms and self.started_ms and self.started_ms >= self.queued_ms:
            return (self.started_ms - self.queued_ms) / 1000
        return None

    def as_json(self) -> dict[str, Any]:
        """The record as the JSON API shows it."""
        return {
            "id": self.task_id,
            "name": self.name,
            "state": self.state,
            "queue": self.queue,
            "worker": self.worker,
            "queued_ms": self.queued_ms or None,
            "started_ms": self.started_ms or None,
            "finished_ms": self.finished_ms or None,
            "runtime_s": self.runtime_s,
            "wait_s": self.wait_s,
            "retries": self.retries,
            "exception_type": self.details.get("exc"),
            "exception_message": self.details.get("msg"),
            "traceback": self.details.get("tb"),
            "reason": self.details.get("reason"),
            "args": self.details.get("args"),
            "kwargs": self.details.get("kwargs"),
            "parent_id": self.details.get("parent"),
            "root_id": self.details.get("root"),
            # pass as cursor= to list what comes after this record
            "cursor": f"{self.entry_id}.{self.index}.{self.queue}",
        }


def entry_rows(items: list[Any]) -> list[Any]:
    """The records of a log entry's msgpack array: each record as it is, each block expanded into
    its records (see the module docstring). A block that does not decode is skipped."""
    if not any(isinstance(item, dict) for item in items):
        return items
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            out += _block_rows(item)
        else:
            out.append(item)
    return out


def _block_rows(block: Mapping[str, Any]) -> list[list[Any]]:
    try:
        n = int(block["n"])
        ids, ready = str(block["id"]).split("\x00"), str(block["ready"]).split("\x00")
        times = _numbers("d", block["t"])
        retries = _numbers("I", block["retries"]) if "retries" in block else [0] * n
        if not len(ids) == len(ready) == len(retries) == n or len(times) not in (2 * n, 3 * n):
            return []
        name, state = str(block["name"]), str(block["state"])
    except (KeyError, TypeError, ValueError):
        return []
    if len(times) == 2 * n:  # finished, runtime: each run started its runtime before its finish
        return [
            [ids[i], name, state, ready[i], times[i] - times[n + i], times[i], times[n + i], retries[i]]
            for i in range(n)
        ]
    return [
        [ids[i], name, state, ready[i], times[i], times[n + i], times[2 * n + i], retries[i]]
        for i in range(n)
    ]


def _numbers(code: str, data: Any) -> array[Any]:
    """An array of ``code`` items from little-endian bytes."""
    out = array(code)
    out.frombytes(bytes(data))
    if sys.byteorder != "little":
        out.byteswap()
    return out


def block(n: int, name: str, state: str, ids: str, ready: str, times: bytes, retries: bytes = b"") -> bytes:
    """The packed block (see the module docstring) of ``n`` plain successes of task ``name``, from
    their columns: ``ids`` and ``ready`` joined by NUL (none may hold one), ``times`` the finished
    times then the runtimes (or the started times, then those), as little-endian float64, and
    ``retries`` (empty: all 0) as little-endian uint32. Built without Python code per record: this
    runs for every task a worker records."""
    out: dict[str, Any] = {"n": n, "name": name, "state": state, "id": ids, "ready": ready, "t": times}
    if retries:
        out["retries"] = retries
    return pack(out)


def pack(records: Any) -> bytes:
    return msgpack.packb(records, use_bin_type=True)  # type: ignore[no-any-return]


def decode_entry(data: bytes, queue: str, worker: str, entry_id: str) -> list[TaskRecord]:
    """The records of one log (or failure) entry, in the order recorded. An entry that does not
    decode (written by something else) yields nothing rather than an error: readers list what they can."""
    try:
        rows = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)
    except Exception:  # any garbage in Redis: skip the entry
        return []
    if not isinstance(rows, list):
        return []
    rows = entry_rows(rows)
    out = []
    for i, row in enumerate(rows):
        rec = decode_row(row, queue, worker, entry_id, i)
        if rec is not None:
            out.append(rec)
    return out


def decode_row(row: Any, queue: str, worker: str, entry_id: str, index: int) -> TaskRecord | None:
    if not isinstance(row, list) or len(row) < 8:
        return None
    try:
        details = row[8] if len(row) > 8 and isinstance(row[8], dict) else {}
        ready = row[3]
        queued_ms = int(str(ready).partition("-")[0] or 0) if isinstance(ready, str) else int(ready or 0)
        return TaskRecord(
            str(row[0]),
            str(row[1]),
            str(row[2]),
            queue,
            worker,
            queued_ms,
            int(float(row[4] or 0) * 1000),
            int(float(row[5] or 0) * 1000),
            float(row[6] or 0),
            int(row[7] or 0),
            {str(k): str(v) for k, v in details.items()},
            entry_id,
            index,
        )
    except (TypeError, ValueError):
        return None


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def redact_pattern(extra: Iterable[str] = ()) -> re.Pattern[str]:
    words = [re.escape(w) for w in (*DEFAULT_REDACT, *extra) if w]
    return re.compile("|".join(words), re.IGNORECASE)


def show_args(args: Any, kwargs: Any, limit: int, redact: re.Pattern[str]) -> tuple[str, str]:
    """``repr`` of the arguments, kwargs whose names look secret replaced by ``'***'``, each cut to
    ``limit`` characters. Never raises: a ``__repr__`` that fails shows as its error."""
    shown_kwargs: Any = kwargs
    if isinstance(kwargs, Mapping):
        shown_kwargs = {
            k: ("***" if isinstance(k, str) and redact.search(k) else v) for k, v in kwargs.items()
        }
    return _safe_repr(args, limit), _safe_repr(shown_kwargs, limit)


def _safe_repr(value: Any, limit: int) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a user's __repr__ may raise anything
        text = f"<repr failed: {type(exc).__name__}>"
    return truncate(text, limit)
