"""celeriac: a lean, at-least-once distributed task queue for Python on Redis, with a Celery-shaped API."""

from ._version import __version__
from .app import Celeriac
from .config import Config
from .context import Request, current_request
from .exceptions import (
    BrokerConnectionError,
    BrokerError,
    BrokerFullError,
    CeleriacError,
    ConfigurationError,
    DecodeError,
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
from .result import AsyncResult, EagerResult
from .states import TaskState
from .task import Signature, Task
from .worker import Worker

__all__ = [
    "AsyncResult",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerFullError",
    "Celeriac",
    "CeleriacError",
    "Config",
    "ConfigurationError",
    "DecodeError",
    "EagerResult",
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
    "current_request",
]
