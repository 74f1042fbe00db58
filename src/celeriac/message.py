"""The wire format: one compact, versioned msgpack array per task.

Why an array and not a map: field names would be repeated in every queued message, and the bar is
64 bytes of Redis memory per queued ``add(1, 2)``. Trailing fields that hold their default are left
out, so the common message is ``[1, <16-byte id>, "tasks.add", [1, 2]]`` (about 33 bytes).

Layout (version 1)::

    [version, id, task, args, kwargs?, options?]

``id`` is 16 raw bytes when the task id is a canonical UUID (the default) and a string otherwise.
``options`` is a map with short keys, listed in ``_OPTION_KEYS``; unknown keys are kept so that a newer
producer's options survive a round trip through an older worker. (``tp``/``ts``, the W3C trace context
of OpenTelemetry, were added this way: an older worker keeps them in ``extra`` and runs the task.)

Content. Arguments are msgpack values. A task that opts into pickle (``serializer="pickle"``, accepted
only where ``accept_content`` lists it) keeps the msgpack envelope, with ``args`` replaced by ONE
pickled blob of ``(args, kwargs)``, ``kwargs`` empty and ``"ct": "pickle"`` in the options. An older
worker that does not know ``ct`` refuses the message (``args`` is not a list) instead of calling the
task with a blob. A decoder unpickles only when the caller's ``accept_content`` lists ``pickle``, and
only after the signature (below) checked out.

Signatures (optional, ``message_signing_key``). A signed message is::

    b"\xc1m" + HMAC-SHA256(key, b"\xc1m" + body) + body        # 2 + 32 bytes + the message above

Unsigned deployments pay nothing: the body is unchanged, and the two cases cannot be confused because
an encoded message always starts with a msgpack fixarray byte (``0x94``..``0x96``) while ``0xc1`` is
the one byte msgpack never uses. The second byte names what is signed (``m`` message, ``r`` result
record) and is covered by the MAC, so a signed result can never pass for a signed message. A decoder
with keys (the signing key first, then older keys still accepted during a rotation) refuses unsigned
and tampered messages; a decoder without keys strips a signature unchecked, so producers can start
signing before the workers require it. Signatures prove who wrote a message, not that it is fresh:
a captured message can be replayed (as any task may run twice anyway: at-least-once).
"""

from __future__ import annotations

import hmac
import math
import operator
import os
import pickle
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ._types import from_ext, json_dumps, json_loads, to_ext
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
    "serializer": "ct",
    # W3C trace context (OpenTelemetry, ``celeriac.tracing``): only when tracing is on
    "traceparent": "tp",
    "tracestate": "ts",
    "unique_key": "uq",
}
_WIRE_TO_OPTION = {v: k for k, v in _OPTION_KEYS.items()}
_OPTION_ITEMS = tuple(_OPTION_KEYS.items())
# all option values in one C call; most messages carry none, which one tuple comparison tells
_option_values = operator.attrgetter(*_OPTION_KEYS)
_NO_OPTION_VALUES = tuple(0 if name == "retries" else None for name in _OPTION_KEYS)

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
    "serializer": (str,),
    "traceparent": (str,),
    "tracestate": (str,),
    "unique_key": (str,),
}
# integers read off the wire stay far below msgpack's 64-bit limit, so a retry can always re-encode them
_MAX_INT = 1 << 62

#: content types an app can accept; the envelope itself is always msgpack
CONTENT_TYPES = ("msgpack", "json", "pickle")

# signatures: a marker byte msgpack never uses, then what is signed ("m"essage or "r"esult record)
SIGNED_MESSAGE = b"\xc1m"
SIGNED_RESULT = b"\xc1r"
_SIGNED_BYTE = 0xC1
_TAG_BYTES = 32


def new_task_id() -> str:
    """A new random task id (a UUID4 string, as Celery uses)."""
    global _last_id
    # uuid.uuid4() builds an object and validates it again; this is the same value, 3x cheaper
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    packed = bytes(raw)
    task_id = _format_uuid(packed)
    _last_id = (task_id, packed)
    return task_id


# The id made last, with its 16 bytes: a message is usually encoded right after its id is made, and
# this spares parsing the string back. Checked by identity, so a stale or other thread's entry is
# simply not used.
_last_id: tuple[str, bytes] = ("", b"")


def _format_uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# a canonical (lower-case) UUID string travels as its 16 bytes; anything else as text
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(slots=True)  # not frozen: hot path (design.md)
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
    #: ``None`` for msgpack arguments (the default), ``"pickle"`` for a task that opted into pickle
    serializer: str | None = None
    #: W3C ``traceparent`` / ``tracestate`` of the span that sent it (``celeriac.tracing``; else None)
    traceparent: str | None = None
    tracestate: str | None = None
    #: the lock a unique task holds while queued or running (released when it finishes)
    unique_key: str | None = None
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
    last = _last_id
    if last[0] is task_id:
        return last[1]
    if len(task_id) == 36 and _CANONICAL_UUID.fullmatch(task_id):
        return bytes.fromhex(task_id.replace("-", ""))
    return task_id


def _decode_id(raw: object) -> str:
    if isinstance(raw, bytes) and len(raw) == 16:
        return _format_uuid(raw)
    if isinstance(raw, str) and raw:
        return raw
    raise DecodeError(f"bad task id field: {raw!r}")


def encode(message: Message, *, signing_key: bytes | None = None) -> bytes:
    """Encode a message to bytes, signed when ``signing_key`` is given.

    Raises:
        SerializationError: an argument (or option) is of a type msgpack (or, for a pickle task,
            pickle) cannot carry.
    """
    values = _option_values(message)
    if values == _NO_OPTION_VALUES and not message.extra and message.serializer is None:
        return encode_call(message.id, message.task, message.args, message.kwargs, signing_key)
    options: dict[str, Any] = {}
    if values != _NO_OPTION_VALUES:
        options = {wire: v for (_, wire), v in zip(_OPTION_ITEMS, values) if v is not None}
        if options.get("r") == 0:
            del options["r"]  # retries=0 is the default: left out
    if message.extra:
        options.update(message.extra)
    # msgpack packs tuples as arrays: no list() copy needed
    args: Any = message.args
    kwargs: Mapping[str, Any] = message.kwargs
    if message.serializer is not None:
        args, kwargs = _content_arguments(message), {}
    fields: list[Any] = [PROTOCOL_VERSION, _encode_id(message.id), message.task, args]
    if kwargs or options:
        fields.append(dict(kwargs))
    if options:
        fields.append(options)
    return _pack(fields, message.task, signing_key)


def encode_call(
    task_id: str,
    task: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    signing_key: bytes | None = None,
    options: Mapping[str, Any] | None = None,
) -> bytes:
    """Encode a message without a :class:`Message` object (the common call: ``delay()``, bulk sends,
    group members); the same bytes :func:`encode` makes for it. ``options`` are wire options (short
    keys, as :func:`encode` writes them).

    Raises:
        SerializationError: an argument is of a type msgpack cannot carry.
    """
    fields: list[Any] = [PROTOCOL_VERSION, _encode_id(task_id), task, args]
    if kwargs or options:
        fields.append(kwargs if type(kwargs) is dict else dict(kwargs))
    if options:
        fields.append(options)
    return _pack(fields, task, signing_key)


def _pack(fields: list[Any], task: str, signing_key: bytes | None) -> bytes:
    try:
        body: bytes = msgpack.packb(fields, use_bin_type=True, default=to_ext)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(
            f"cannot serialize arguments of task {task!r}: {exc} (arguments must be None, bool, int, "
            "float, str, bytes, list, tuple, dict, datetime, date, time, timedelta, UUID or Decimal)"
        ) from exc
    return body if signing_key is None else sign(body, signing_key, SIGNED_MESSAGE)


def _content_arguments(message: Message) -> bytes:
    if message.serializer == "json":
        try:
            return json_dumps([list(message.args), dict(message.kwargs)])
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"cannot serialize arguments of task {message.task!r} as JSON: {exc}"
            ) from exc
    if message.serializer != "pickle":
        raise SerializationError(
            f"unknown serializer {message.serializer!r} (use 'msgpack', 'json' or 'pickle')"
        )
    try:
        return pickle.dumps((tuple(message.args), dict(message.kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # pickling user objects raises many unrelated types
        raise SerializationError(f"cannot pickle arguments of task {message.task!r}: {exc}") from exc


def sign(body: bytes, key: bytes, header: bytes = SIGNED_MESSAGE) -> bytes:
    """``header + HMAC-SHA256(key, header + body) + body`` (see the module docstring)."""
    return header + hmac.digest(key, header + body, "sha256") + body


def is_signed(data: bytes) -> bool:
    """True when ``data`` starts with a signature header (of a message or of a result record)."""
    return bool(data) and data[0] == _SIGNED_BYTE


def unwrap(data: bytes, keys: Sequence[bytes], header: bytes = SIGNED_MESSAGE) -> bytes:
    """The body of signed ``data``, checked against ``keys`` (any one may match); unchecked when
    ``keys`` is empty.

    Raises:
        DecodeError: the header is not ``header``, the envelope is truncated, or no key matches.
    """
    what = "message" if header == SIGNED_MESSAGE else "result record"
    if len(data) < len(header) + _TAG_BYTES or data[: len(header)] != header:
        raise DecodeError(f"truncated or unknown signed envelope (of a {what})", data)
    start = len(header) + _TAG_BYTES
    tag, body = data[len(header) : start], data[start:]
    if keys:
        signed = header + body
        if not any(hmac.compare_digest(tag, hmac.digest(key, signed, "sha256")) for key in keys):
            raise DecodeError(
                f"bad signature: the {what} was tampered with, or signed with a key that is neither "
                "message_signing_key nor in message_signing_keys",
                data,
            )
    return body


def decode(
    data: bytes, *, accept_content: Collection[str] = ("msgpack",), signing_keys: Sequence[bytes] = ()
) -> Message:
    """Decode bytes produced by :func:`encode`.

    Args:
        data: the encoded message.
        accept_content: content types to accept; a pickle message is refused unless ``"pickle"`` is
            listed.
        signing_keys: keys a signature may be made with (signing key first). When given, unsigned and
            tampered messages are refused; when empty, a signature is stripped unchecked.

    Raises:
        DecodeError: the bytes are not a celeriac message of a known version, or are refused (not
            signed, bad signature, content type not accepted). Never any other exception.
    """
    if data and data[0] == _SIGNED_BYTE:
        data = unwrap(data, signing_keys, SIGNED_MESSAGE)
    elif signing_keys:
        raise DecodeError(
            "unsigned message refused: message_signing_key is set, so only signed messages run", data
        )
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True, ext_hook=from_ext)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"undecodable message: {exc}", data) from exc
    if not isinstance(fields, list) or len(fields) < 4:
        raise DecodeError("message is not a celeriac envelope", data)
    version = fields[0]
    if version != PROTOCOL_VERSION:
        raise DecodeError(f"unsupported message protocol version {version!r}", data)
    task, args = fields[2], fields[3]
    if len(fields) == 4 and type(task) is str and task and type(args) is list:
        # the common message (positional arguments, no options): the checks below, made short
        raw_id = fields[1]  # _decode_id, its usual case inlined
        if type(raw_id) is bytes and len(raw_id) == 16:
            return Message(_format_uuid(raw_id), task, tuple(args))
        return Message(_decode_id(raw_id), task, tuple(args))
    kwargs = fields[4] if len(fields) > 4 else {}
    raw_options = fields[5] if len(fields) > 5 else {}
    if not isinstance(task, str) or not task:
        raise DecodeError(f"bad task name field: {task!r}", data)
    if not isinstance(raw_options, dict):
        raise DecodeError("options field is not a map", data)
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw_options.items():
        name = _WIRE_TO_OPTION.get(key) if isinstance(key, str) else None
        if name is None:
            extra[str(key)] = value
        elif value is not None:
            if not _valid_option(name, value):
                raise DecodeError(f"bad option {key}={_short(value)}", data)
            known[name] = value
    serializer = known.get("serializer")
    if serializer == "json":  # JSON runs no code when read: always accepted, like msgpack
        args, kwargs = _json_arguments(args, kwargs, data)
    elif serializer is not None:
        if "pickle" not in accept_content:
            raise DecodeError(
                f"content type {serializer!r} refused: this app's accept_content does not list it", data
            )
        args, kwargs = _unpickle_arguments(args, kwargs, data)
    if not isinstance(args, list):
        raise DecodeError("args field is not a list", data)
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise DecodeError("kwargs field is not a map of names", data)
    try:
        return Message(
            id=_decode_id(fields[1]), task=task, args=tuple(args), kwargs=kwargs, extra=extra, **known
        )
    except TypeError as exc:  # pragma: no cover - guarded by the key map above
        raise DecodeError(f"bad options: {exc}", data) from exc


def _valid_option(name: str, value: Any) -> bool:
    types = _OPTION_TYPES[name]
    if not isinstance(value, types):
        return False
    if isinstance(value, bool):  # a bool is an int to isinstance; only boolean options take one
        return bool in types
    if isinstance(value, int):
        return 0 <= value <= _MAX_INT
    if isinstance(value, float):  # result_expires_s: a TTL, so finite and positive
        return math.isfinite(value) and 0 < value <= _MAX_INT
    if name == "serializer":
        return value in ("pickle", "json")
    if isinstance(value, str) and name in ("traceparent", "tracestate"):
        return len(value) <= 512  # W3C: traceparent is 55 characters, tracestate at most 512
    return True


def _json_arguments(blob: Any, kwargs: Any, data: bytes) -> tuple[Any, Any]:
    if not isinstance(blob, bytes) or kwargs != {}:
        raise DecodeError("a JSON message carries its arguments as one blob in the args field", data)
    try:
        value = json_loads(blob)
    except Exception as exc:  # malformed JSON, or a bad tagged value
        raise DecodeError(f"cannot read JSON arguments: {type(exc).__name__}: {exc}", data) from None
    if not (isinstance(value, list) and len(value) == 2):
        raise DecodeError("JSON arguments are not an [args, kwargs] pair", data)
    return value[0], value[1]


def _unpickle_arguments(blob: Any, kwargs: Any, data: bytes) -> tuple[Any, Any]:
    if not isinstance(blob, bytes) or kwargs != {}:
        raise DecodeError("a pickle message carries its arguments as one blob in the args field", data)
    try:
        value = pickle.loads(blob)
    except Exception as exc:  # a broken or hostile blob raises anything
        raise DecodeError(f"cannot unpickle arguments: {type(exc).__name__}: {exc}", data) from None
    if not (isinstance(value, tuple) and len(value) == 2):
        raise DecodeError("pickled arguments are not an (args, kwargs) pair", data)
    args, kw = value
    return (list(args) if isinstance(args, (tuple, list)) else args), kw


def peek(data: bytes) -> tuple[str, str] | None:
    """``(task id, task name)`` of an encoded message, without checking its signature or unpickling
    anything (for listings such as dead letters); None when they cannot be read."""
    try:
        if is_signed(data):
            data = unwrap(data, (), SIGNED_MESSAGE)
        fields = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
        if isinstance(fields, list) and len(fields) >= 3 and isinstance(fields[2], str) and fields[2]:
            return _decode_id(fields[1]), fields[2]
    except Exception:  # garbage of any kind: nothing to show
        pass
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__: Sequence[str] = [
    "CONTENT_TYPES",
    "PROTOCOL_VERSION",
    "SIGNED_MESSAGE",
    "SIGNED_RESULT",
    "Message",
    "decode",
    "encode",
    "encode_call",
    "is_signed",
    "new_task_id",
    "peek",
    "sign",
    "unwrap",
]
