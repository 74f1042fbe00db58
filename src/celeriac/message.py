"""The wire format: one compact, versioned msgpack array per task.

Why an array and not a map: field names would be repeated in every queued message, and the bar is
64 bytes of Redis memory per queued ``add(1, 2)``. Trailing fields that hold their default are left
out, so the common message is ``[1, <16-byte id>, "tasks.add", [1, 2]]`` (about 33 bytes).

Layout (version 1)::

    [version, id, task, args, kwargs?, options?]

``id`` is 16 raw bytes when the task id is a canonical UUID (the default) and a string otherwise.
``options`` is a map with short keys, listed in ``_OPTION_KEYS``; unknown keys are kept so that a newer
producer's options survive a round trip through an older worker.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .exceptions import DecodeError, SerializationError

PROTOCOL_VERSION = 1

# long name -> short wire key
_OPTION_KEYS: dict[str, str] = {
    "retries": "r",
    "eta_ms": "e",
    "expires_ms": "x",
    "ignore_result": "ir",
    "max_retries": "mr",
    "acks_late": "al",
    "result_expires_s": "rx",
    "root_id": "ro",
    "parent_id": "pa",
    "time_limit_s": "tl",
    "soft_time_limit_s": "stl",
}
_WIRE_TO_OPTION = {v: k for k, v in _OPTION_KEYS.items()}
_OPTION_ITEMS = tuple(_OPTION_KEYS.items())

# what each option may hold once decoded: options are read off the wire, so they are checked
_INT = (int,)
_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "retries": _INT,
    "eta_ms": _INT,
    "expires_ms": _INT,
    "ignore_result": (bool,),
    "max_retries": _INT,
    "acks_late": (bool,),
    "result_expires_s": (int, float),
    "root_id": (str,),
    "parent_id": (str,),
    "time_limit_s": (int, float),
    "soft_time_limit_s": (int, float),
}


def new_task_id() -> str:
    """A new random task id (a UUID4 string, as Celery uses)."""
    # uuid.uuid4() builds an object and validates it again; this is the same value, 3x cheaper
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return _format_uuid(bytes(raw))


def _format_uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# a canonical (lower-case) UUID string travels as its 16 bytes; anything else as text
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Message:
    """One task invocation, as it travels through Redis. A pure value: no I/O, no app reference."""

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 0
    eta_ms: int | None = None
    expires_ms: int | None = None
    #: per-call overrides of the task's declared options (``None`` means "use the task's own")
    ignore_result: bool | None = None
    max_retries: int | None = None
    acks_late: bool | None = None
    result_expires_s: float | None = None
    root_id: str | None = None
    parent_id: str | None = None
    #: per-call time limits in seconds (``apply_async(time_limit=..., soft_time_limit=...)``)
    time_limit_s: float | None = None
    soft_time_limit_s: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """The non-default options, keyed by their long names."""
        out: dict[str, Any] = {}
        for name in _OPTION_KEYS:
            value = getattr(self, name)
            if value is not None and not (name == "retries" and value == 0):
                out[name] = value
        return out


def _encode_id(task_id: str) -> bytes | str:
    if len(task_id) == 36 and _CANONICAL_UUID.fullmatch(task_id):
        return bytes.fromhex(task_id.replace("-", ""))
    return task_id


def _decode_id(raw: object) -> str:
    if isinstance(raw, bytes) and len(raw) == 16:
        return _format_uuid(raw)
    if isinstance(raw, str) and raw:
        return raw
    raise DecodeError(f"bad task id field: {raw!r}")


def encode(message: Message) -> bytes:
    """Encode a message to bytes.

    Raises:
        SerializationError: an argument (or option) is of a type msgpack cannot carry.
    """
    options = {wire: v for name, wire in _OPTION_ITEMS if (v := getattr(message, name)) is not None}
    if options.get("r") == 0:
        del options["r"]  # retries=0 is the default: left out
    if message.extra:
        options.update(message.extra)
    # msgpack packs tuples as arrays: no list() copy needed
    fields: list[Any] = [PROTOCOL_VERSION, _encode_id(message.id), message.task, message.args]
    if message.kwargs or options:
        fields.append(dict(message.kwargs))
    if options:
        fields.append(options)
    try:
        return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(
            f"cannot serialize arguments of task {message.task!r}: {exc} "
            "(arguments must be msgpack types: None, bool, int, float, str, bytes, list, tuple, dict)"
        ) from exc


def decode(data: bytes) -> Message:
    """Decode bytes produced by :func:`encode`.

    Raises:
        DecodeError: the bytes are not a celeriac message of a known version.
    """
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"undecodable message: {exc}", data) from exc
    if not isinstance(fields, list) or len(fields) < 4:
        raise DecodeError("message is not a celeriac envelope", data)
    version = fields[0]
    if version != PROTOCOL_VERSION:
        raise DecodeError(f"unsupported message protocol version {version!r}", data)
    task, args = fields[2], fields[3]
    kwargs = fields[4] if len(fields) > 4 else {}
    raw_options = fields[5] if len(fields) > 5 else {}
    if not isinstance(task, str) or not task:
        raise DecodeError(f"bad task name field: {task!r}", data)
    if not isinstance(args, list):
        raise DecodeError("args field is not a list", data)
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise DecodeError("kwargs field is not a map of names", data)
    if not isinstance(raw_options, dict):
        raise DecodeError("options field is not a map", data)
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw_options.items():
        name = _WIRE_TO_OPTION.get(key) if isinstance(key, str) else None
        if name is None:
            extra[str(key)] = value
        elif value is not None:
            if not isinstance(value, _OPTION_TYPES[name]) or (isinstance(value, int) and value < 0):
                raise DecodeError(f"bad option {key}={value!r}", data)
            known[name] = value
    try:
        return Message(
            id=_decode_id(fields[1]), task=task, args=tuple(args), kwargs=kwargs, extra=extra, **known
        )
    except TypeError as exc:  # pragma: no cover - guarded by the key map above
        raise DecodeError(f"bad options: {exc}", data) from exc


__all__: Sequence[str] = ["PROTOCOL_VERSION", "Message", "decode", "encode", "new_task_id"]
