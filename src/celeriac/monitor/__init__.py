"""Task outcomes recorded by workers in bounded Redis structures, and the reader the dashboard and
``/metrics`` use. See docs/monitoring.md for the data layout."""

from typing import TYPE_CHECKING, Any

from .record import TaskRecord
from .recorder import MonitorSettings, Recorder

if TYPE_CHECKING:
    from .reader import Cursor, FailureGroup, MonitorReader, Page, Series

#: the reader's names, imported on first use: a worker (which only records) never loads the reader
_READER = {"Cursor", "FailureGroup", "MonitorReader", "Page", "Series"}


def __getattr__(name: str) -> Any:
    if name not in _READER:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import reader

    value = getattr(reader, name)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = [
    "Cursor",
    "FailureGroup",
    "MonitorReader",
    "MonitorSettings",
    "Page",
    "Recorder",
    "Series",
    "TaskRecord",
]
