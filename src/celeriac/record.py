"""The result record wire format: what a result store keeps for one task.

A record is a msgpack map with short keys. The value of a task that opted into pickle travels as one
pickled blob under ``pv`` instead of ``v`` (and is unpickled only by a reader that accepts pickle; see
:mod:`celeriac.codec`). This sits beside :mod:`celeriac.message` (the message wire format) so that the
codec, the execution semantics, brokers and result stores share it without importing each other.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import msgpack

from ._types import from_ext, json_dumps, json_loads, to_ext
from .exceptions import DecodeError, SerializationError
from .states import TaskState


@dataclass(slots=True)  # not frozen: hot path (design.md)
class ResultRecord:
    """The stored outcome of a task."""

    task_id: str
    state: TaskState
    value: Any = None
    exc_type: str | None = None
    exc_message: str | None = None
    traceback: str | None = None
    date_done_ms: int = 0
    retries: int = 0


@dataclass(slots=True)  # not frozen: hot path (design.md)
class ResultWrite:
    """One result to write, already encoded, with its time to live: what the worker hands to a result
    store, or to a broker that writes results atomically with its fenced acks."""

    task_id: str
    payload: bytes
    ttl_s: float


# an exception's message is stored whole up to this size (the traceback is capped by the executor)
MAX_EXC_MESSAGE_CHARS = 16_000


def encode_record(record: ResultRecord, *, pickled: bool = False, as_json: bool = False) -> bytes:
    """Encode a record; ``pickled``: carry the value as a pickled blob (a pickle task's result);
    ``as_json``: as a JSON blob under ``jv`` (a ``task_serializer="json"`` task's result).

    Raises:
        SerializationError: the value is not msgpack-serializable (or not picklable).
    """
    fields: dict[str, Any] = {"s": record.state.value, "t": record.date_done_ms}
    if record.value is not None:
        if pickled:
            try:
                fields["pv"] = pickle.dumps(record.value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # pickling user objects raises many unrelated types
                raise SerializationError(
                    f"result of type {type(record.value).__name__} cannot be pickled: {exc}"
                ) from exc
        elif as_json:
            try:
                fields["jv"] = json_dumps(record.value)
            except (TypeError, ValueError) as exc:
                raise SerializationError(
                    f"result of type {type(record.value).__name__} is not JSON serializable: {exc}"
                ) from exc
        else:
            fields["v"] = record.value
    if record.exc_type:
        fields["et"] = record.exc_type
        message = record.exc_message or ""
        if len(message) > MAX_EXC_MESSAGE_CHARS:
            message = message[:MAX_EXC_MESSAGE_CHARS] + f"... ({len(message)} characters, truncated)"
        fields["em"] = message
    if record.traceback:
        fields["tb"] = record.traceback
    if record.retries:
        fields["r"] = record.retries
    try:
        return msgpack.packb(fields, use_bin_type=True, default=to_ext)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(
            f"result of type {type(record.value).__name__} is not serializable: {exc}"
        ) from exc


def decode_record(task_id: str, payload: bytes, *, unpickle: bool = False) -> ResultRecord:
    """Decode a record written by :func:`encode_record`.

    Raises:
        DecodeError: the payload is not a record, or holds a pickled value and ``unpickle`` is false.
    """
    try:
        fields = msgpack.unpackb(payload, raw=False, strict_map_key=False, ext_hook=from_ext)
        value = json_loads(fields["jv"]) if "jv" in fields else fields.get("v")
        if "pv" in fields:
            if not unpickle:
                raise DecodeError(
                    "the value is pickled and this app does not accept it (accept_content lacks 'pickle', "
                    "or the record is not signed with an accepted message signing key)"
                )
            value = pickle.loads(fields["pv"])
        return ResultRecord(
            task_id=task_id,
            state=TaskState(fields["s"]),
            value=value,
            exc_type=fields.get("et"),
            exc_message=fields.get("em"),
            traceback=fields.get("tb"),
            date_done_ms=int(fields.get("t", 0)),
            retries=int(fields.get("r", 0)),
        )
    except Exception as exc:
        raise DecodeError(f"undecodable result record for task {task_id}: {exc}", payload) from exc
