"""Task outcomes recorded by workers in bounded Redis structures, and the reader the dashboard and
``/metrics`` use. See docs/monitoring.md for the data layout."""

from .reader import Cursor, FailureGroup, MonitorReader, Page, Series
from .record import TaskRecord
from .recorder import MonitorSettings, Recorder

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
