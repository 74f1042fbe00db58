"""The types Celery's JSON serializer carries, beyond msgpack's own: ``datetime``, ``date``, ``time``,
``timedelta``, ``UUID``, ``Decimal``. No pickle: each is a msgpack extension type (msgpack content)
or a ``{"__type__": ..., "__value__": ...}`` tag (JSON content, as kombu writes them).

msgpack extension payloads (compact; a value of a plain type never reaches these hooks, so the common
message pays nothing):

=====  ===========  =========================================================
code   type         payload
=====  ===========  =========================================================
1      datetime     ISO 8601 text (``isoformat()``: offset kept, naive stays naive)
2      date         ISO 8601 text
3      time         ISO 8601 text
4      timedelta    msgpack ``[days, seconds, microseconds]``
5      UUID         the 16 bytes
6      Decimal      its text (exact)
=====  ===========  =========================================================
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgpack

if TYPE_CHECKING:
    from decimal import Decimal

_DATETIME, _DATE, _TIME, _TIMEDELTA, _UUID, _DECIMAL = 1, 2, 3, 4, 5, 6


def _is_decimal(obj: Any) -> bool:
    """``isinstance(obj, Decimal)`` without importing :mod:`decimal` (a third of a MiB in every
    worker and producer): a Decimal exists only once its module was imported."""
    decimal = sys.modules.get("decimal")
    return decimal is not None and isinstance(obj, decimal.Decimal)


def _decimal(text: str) -> Decimal:
    from decimal import Decimal

    return Decimal(text)


def to_ext(obj: Any) -> msgpack.ExtType:
    """msgpack's ``default=``: one of the types above as an extension type.

    Raises:
        TypeError: any other type (msgpack reports it as not serializable).
    """
    if isinstance(obj, dt.datetime):
        return msgpack.ExtType(_DATETIME, obj.isoformat().encode())
    if isinstance(obj, dt.date):
        return msgpack.ExtType(_DATE, obj.isoformat().encode())
    if isinstance(obj, dt.time):
        return msgpack.ExtType(_TIME, obj.isoformat().encode())
    if isinstance(obj, dt.timedelta):
        return msgpack.ExtType(_TIMEDELTA, msgpack.packb([obj.days, obj.seconds, obj.microseconds]))
    if isinstance(obj, UUID):
        return msgpack.ExtType(_UUID, obj.bytes)
    if _is_decimal(obj):
        return msgpack.ExtType(_DECIMAL, str(obj).encode())
    raise TypeError(f"can not serialize {type(obj).__name__!r} object")


def from_ext(code: int, data: bytes) -> Any:
    """msgpack's ``ext_hook``: the value of an extension type written by :func:`to_ext`."""
    if code == _DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _TIME:
        return dt.time.fromisoformat(data.decode())
    if code == _TIMEDELTA:
        days, seconds, micros = msgpack.unpackb(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == _UUID:
        return UUID(bytes=bytes(data))
    if code == _DECIMAL:
        return _decimal(data.decode())
    return msgpack.ExtType(code, data)


# ---- JSON content (task_serializer="json") --------------------------------------------------------------
_JSON_TAGS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(seconds=float(v)),
    "uuid": UUID,
    "decimal": _decimal,
}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, dt.datetime):
        return {"__type__": "datetime", "__value__": obj.isoformat()}
    if isinstance(obj, dt.date):
        return {"__type__": "date", "__value__": obj.isoformat()}
    if isinstance(obj, dt.time):
        return {"__type__": "time", "__value__": obj.isoformat()}
    if isinstance(obj, dt.timedelta):
        return {"__type__": "timedelta", "__value__": obj.total_seconds()}
    if isinstance(obj, UUID):
        return {"__type__": "uuid", "__value__": str(obj)}
    if _is_decimal(obj):
        return {"__type__": "decimal", "__value__": str(obj)}
    if isinstance(obj, tuple):  # pragma: no cover - json writes tuples as lists itself
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _json_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        parse = _JSON_TAGS.get(obj["__type__"])
        if parse is not None:
            return parse(obj["__value__"])
    return obj


def json_dumps(value: Any) -> bytes:
    """Compact JSON (kombu's type tags for the types above)."""
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False).encode()


def json_loads(data: bytes) -> Any:
    return json.loads(data, object_hook=_json_hook)
