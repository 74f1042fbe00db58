"""The result-backend contract and the result record format.

A record is a msgpack map with short keys. The value of a task that opted into pickle travels as one
pickled blob under ``pv`` instead of ``v`` (and is unpickled only by a reader that accepts pickle; see
:mod:`celeriac.codec`). The worker writes records in batches (``store_many``); a
caller blocks in ``wait`` until the record exists (no polling: the Redis backend blocks on the key).
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from ..exceptions import DecodeError, SerializationError
from ..states import TaskState


@dataclass(slots=True)  # not frozen: a frozen init costs ~0.1 us per field, per message
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


@dataclass(slots=True)  # not frozen: a frozen init costs ~0.1 us per field, per message
class StoreResult:
    """One record to store, already encoded, with its time to live."""

    task_id: str
    payload: bytes
    ttl_s: float


# an exception's message is stored whole up to this size (the traceback is capped by the executor)
MAX_EXC_MESSAGE_CHARS = 16_000


def encode_record(record: ResultRecord, *, pickled: bool = False) -> bytes:
    """Encode a record; ``pickled``: carry the value as a pickled blob (a pickle task's result).

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
        return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]
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
        fields = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        value = fields.get("v")
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


class ResultBackend(ABC):
    """Stores and serves task results."""

    @abstractmethod
    def get(self, task_id: str) -> bytes | None:
        """The stored record, or None (sync, non-blocking)."""

    @abstractmethod
    def wait(self, task_id: str, timeout_s: float | None) -> bytes | None:
        """Block until the record exists (None: forever) and return it, or None at timeout."""

    @abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete a stored record."""

    @abstractmethod
    def store(self, items: Sequence[StoreResult]) -> None:
        """Store records (sync; used by eager mode and tools)."""

    @abstractmethod
    async def store_async(self, items: Sequence[StoreResult]) -> None:
        """Store records in one round trip (the worker's batched result writes)."""

    # ---- task control: revoke marks and progress (update_state) ---------------------------------
    def mark_revoked(self, items: Sequence[tuple[str, bytes]], ttl_s: float) -> None:
        """Store each ``(task id, REVOKED record)`` unless that task already has a final result."""
        self.store([StoreResult(i, payload, ttl_s) for i, payload in items if self.get(i) is None])

    def store_progress(self, task_id: str, payload: bytes, ttl_s: float) -> bool:
        """Record a progress record (``update_state``) unless the task has a final result; tell
        :meth:`wait_progress` callers. Returns whether it was stored."""
        return False

    def get_with_progress(self, task_id: str) -> tuple[bytes | None, bytes | None]:
        """``(final record, latest progress record)``, read together; either may be None."""
        return self.get(task_id), None

    def wait_progress(
        self, task_id: str, timeout_s: float | None, on_progress: Callable[[bytes], None]
    ) -> bytes | None:
        """As :meth:`wait`, calling ``on_progress`` with each progress record stored meanwhile."""
        return self.wait(task_id, timeout_s)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release consumer-side resources."""

    def close_sync(self) -> None:  # noqa: B027 - optional hook
        """Release producer-side resources."""
