"""celeriac: a lean, at-least-once distributed task queue for Python on Redis, with a Celery-shaped API.

Names other than the version and the exceptions load on first use (``celeriac.Celeriac`` imports the
app module then). Why: ``celeriac worker -P gevent`` must monkey-patch the standard library before
asyncio, redis-py or the app are imported (``gevent_patch.py``), and a process that never talks to
Redis (a child of the process pool) should not pay for importing its client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .exceptions import (
    BrokerConnectionError,
    BrokerError,
    BrokerFullError,
    CeleriacError,
    ConfigurationError,
    DecodeError,
    Ignore,
    MaxRetriesExceededError,
    MessageTooLarge,
    NotRegistered,
    Reject,
    ResultError,
    ResultsDisabled,
    ResultTimeout,
    ResultTooLarge,
    Retry,
    SerializationError,
    SoftTimeLimitExceeded,
    TaskError,
    TaskExpiredError,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
    WorkerShutdown,
)

if TYPE_CHECKING:
    from .app import Celeriac
    from .app import Celeriac as Celery
    from .config import Config
    from .context import Request, current_request
    from .result import AsyncResult, EagerResult
    from .shared import current_app, current_task, shared_task, signature
    from .states import TaskState
    from .task import Signature, Task
    from .worker import Worker

_LAZY = {
    "AsyncResult": ".result",
    "Celeriac": ".app",
    "Celery": ".app",
    "current_app": ".shared",
    "current_task": ".shared",
    "shared_task": ".shared",
    "signature": ".shared",
    "Config": ".config",
    "EagerResult": ".result",
    "Request": ".context",
    "Signature": ".task",
    "Task": ".task",
    "TaskState": ".states",
    "Worker": ".worker",
    "current_request": ".context",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AsyncResult",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerFullError",
    "Celeriac",
    "CeleriacError",
    "Celery",
    "Config",
    "ConfigurationError",
    "DecodeError",
    "EagerResult",
    "Ignore",
    "MaxRetriesExceededError",
    "MessageTooLarge",
    "NotRegistered",
    "Reject",
    "Request",
    "ResultError",
    "ResultTimeout",
    "ResultTooLarge",
    "ResultsDisabled",
    "Retry",
    "SerializationError",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskError",
    "TaskExpiredError",
    "TaskRevokedError",
    "TaskState",
    "TimeLimitExceeded",
    "Worker",
    "WorkerLostError",
    "WorkerShutdown",
    "__version__",
    "current_app",
    "current_request",
    "current_task",
    "shared_task",
    "signature",
]
