"""What a running task sees about its own invocation (``self.request`` / ``current_task``).

The request lives in a context variable set by the executor: concurrent async tasks on one event loop
and sync tasks in threads each see their own.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)  # not frozen: hot path (design.md)
class Request:
    """The invocation being executed.

    Attributes:
        id: task id (stable across retries).
        task: task name.
        args, kwargs: the arguments.
        retries: how many times this task was retried before this run (0 on the first run).
        eta: due time of this run as epoch seconds, when it was delayed.
        expires: epoch seconds after which the task is discarded unstarted, if set.
        delivery: how many times this message was handed to a worker (> 1 after a crash recovery).
        queue: the queue it was taken from.
        is_eager: True when run inline (``task_always_eager`` or ``Task.apply``).
    """

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 0
    eta: float | None = None
    expires: float | None = None
    delivery: int = 1
    queue: str = ""
    is_eager: bool = False
    root_id: str | None = None
    parent_id: str | None = None
    #: W3C traceparent of the run's span when tracing is on (``celeriac.tracing``): a process-pool child
    #: runs the task under it, so the tasks it sends join the trace
    traceparent: str | None = None
    #: the call's ``max_retries`` (None: the task's)
    max_retries: int | None = None


_current: contextvars.ContextVar[Request | None] = contextvars.ContextVar("celeriac_request", default=None)


def current_request() -> Request | None:
    """The request of the task running in this context, or None outside a task."""
    return _current.get()
