"""Setting values in Celery's spellings and units (MIME content types, ``timedelta``) as celeriac's.

Its own module: :mod:`celeriac.config` normalizes its settings with these, and
:mod:`celeriac.celery_settings` (loaded for Celery's names only) converts with the same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .exceptions import ConfigurationError


def seconds(name: str, value: Any, *, optional: bool = False) -> float | None:
    """Celery takes seconds as a number or a ``timedelta``."""
    if value is None and optional:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(name, f"must be a positive number of seconds or a timedelta, got {value!r}")
    return float(value)


def content_type(value: Any) -> Any:
    """Celery's MIME spellings (``application/json``, ``application/x-msgpack``) as short names."""
    if isinstance(value, str) and value.startswith("application/"):
        value = value.removeprefix("application/").removeprefix("x-").removeprefix("python-")
    return value


def _accepted(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(dict.fromkeys(["msgpack", *(content_type(v) for v in value)]))
    return value  # the setting's validator names what is wrong


def _prefetch_multiplier(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(name, f"must be an integer >= 0, got {value!r}")
    return value


#: the settings whose value is normalized when set, whatever the name used (Celery's spellings and
#: units: MIME types, ``timedelta``); celery_settings' entries for them convert with these
NORMALIZED: dict[str, Callable[[str, Any], Any]] = {
    "accept_content": lambda name, value: _accepted(value),
    "task_serializer": lambda name, value: content_type(value),
    "result_serializer": lambda name, value: content_type(value) if value is not None else None,
    "task_time_limit": lambda name, value: seconds(name, value, optional=True),
    "task_soft_time_limit": lambda name, value: seconds(name, value, optional=True),
    "worker_prefetch_multiplier": _prefetch_multiplier,
}
