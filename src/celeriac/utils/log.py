"""``get_task_logger(__name__)``: a logger whose lines carry the running task's name and id.

Each record logged inside a task gets ``task_name`` and ``task_id`` attributes (for formats that use
them) and its message prefixed with ``name[id]: ``, as Celery's task logger formats it; outside a
task the line is left as is (``task_name``/``task_id`` are ``???``).
"""

from __future__ import annotations

import logging

from ..context import current_request

__all__ = ["get_logger", "get_task_logger"]


class TaskContextFilter(logging.Filter):
    """Adds the running task's name and id to each record (a filter: it never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request()
        if request is None:
            record.task_name, record.task_id = "???", "???"
            return True
        if getattr(record, "task_id", None) != request.id:
            record.task_name, record.task_id = request.task, request.id
            record.msg = f"{request.task}[{request.id}]: {record.msg}"
        return True


_FILTER = TaskContextFilter()


def get_task_logger(name: str) -> logging.Logger:
    """The logger ``name`` with the running task's name and id on each line."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def get_logger(name: str) -> logging.Logger:
    """Celery's ``get_logger``: the standard logger ``name``."""
    return logging.getLogger(name)
