"""The celeriac exception tree. Everything celeriac raises derives from :class:`CeleriacError`.

::

    CeleriacError
    ├── ConfigurationError          a setting has an invalid value (names the setting)
    ├── SerializationError          an argument or result cannot be encoded
    │   ├── MessageTooLarge         an encoded message exceeds ``max_message_bytes``
    │   └── ResultTooLarge          an encoded result exceeds ``result_max_bytes`` (stored as the error)
    ├── DecodeError                 bytes read from Redis are not a celeriac message
    ├── NotRegistered               no task of that name in this app
    ├── BrokerError                 Redis failed or refused an operation
    │   ├── BrokerConnectionError   Redis unreachable (down, wrong URL, network)
    │   └── BrokerFullError         Redis out of memory (``maxmemory`` with ``noeviction``)
    ├── ResultError
    │   ├── ResultTimeout           ``AsyncResult.get(timeout=...)`` ran out of time
    │   └── ResultsDisabled         asked for a result that will never be stored
    ├── TaskError                   a task failed; ``get()`` re-raises the task's own type when known
    │   ├── TaskRevokedError        the task was revoked before it ran
    │   │   └── TaskExpiredError    ``expires`` passed before a worker started it
    │   ├── MaxRetriesExceededError
    │   ├── SoftTimeLimitExceeded   raised inside a task when its ``soft_time_limit`` passes
    │   ├── TimeLimitExceeded       the task's ``time_limit`` passed: it was ended (or abandoned)
    │   └── WorkerLostError         the process running the task died (``-P processes``)
    ├── Retry                       raised by ``Task.retry()``: control flow, not a failure
    └── Reject                      raised by a task to dead-letter its own message

``WorkerShutdown`` derives from ``BaseException`` on purpose: a task's ``except Exception`` must not
swallow the worker's request to stop.
"""

from __future__ import annotations

from typing import Any


class CeleriacError(Exception):
    """Base class of every error celeriac raises."""


class ConfigurationError(CeleriacError, ValueError):
    """A configuration value is invalid. The message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting {setting!r}: {problem}")
        self.setting = setting


class SerializationError(CeleriacError, TypeError):
    """A value could not be serialized (arguments at send time, results at completion)."""


class MessageTooLarge(SerializationError):
    """The encoded message is larger than ``max_message_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"encoded message is {size} bytes, over max_message_bytes={limit}")
        self.size = size
        self.limit = limit


class ResultTooLarge(SerializationError):
    """A task's encoded result is larger than ``result_max_bytes``: the task fails with this error,
    which is stored instead of the value."""


class DecodeError(CeleriacError):
    """Bytes that should hold a celeriac message or result could not be decoded."""

    def __init__(self, reason: str, data: bytes = b"") -> None:
        super().__init__(reason)
        self.data = data


class NotRegistered(CeleriacError, KeyError):
    """No task with this name is registered in the app."""

    def __str__(self) -> str:
        return f"task {self.args[0]!r} is not registered"


class BrokerError(CeleriacError):
    """Redis failed or refused an operation."""


class BrokerConnectionError(BrokerError, ConnectionError):
    """Redis could not be reached."""


class BrokerFullError(BrokerError):
    """Redis refused a write because it is out of memory (``maxmemory`` reached with ``noeviction``)."""


class ResultError(CeleriacError):
    """Base for errors about fetching results."""


class ResultTimeout(ResultError, TimeoutError):
    """The result did not arrive within the timeout."""


class ResultsDisabled(ResultError):
    """The app has no result backend, so no result can be awaited."""


class TaskError(CeleriacError):
    """A task failed. Used by ``AsyncResult.get()`` when the task's own exception type is not importable.

    Attributes:
        exc_type: the qualified name of the exception type raised in the task.
        remote_traceback: the formatted traceback from the worker.
    """

    def __init__(self, message: str, exc_type: str = "", remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.exc_type = exc_type
        self.remote_traceback = remote_traceback


class TaskRevokedError(TaskError):
    """The task was revoked and did not run."""


class TaskExpiredError(TaskRevokedError):
    """The task's ``expires`` time passed before a worker started it; it never ran."""


class MaxRetriesExceededError(TaskError):
    """``Task.retry()`` was called after ``max_retries`` attempts."""


class SoftTimeLimitExceeded(TaskError):
    """Raised *inside* a running task when its soft time limit passes, so that it can clean up.

    A task that does not catch it fails with it. Where it is raised depends on the pool: at the
    coroutine's current ``await`` (async tasks), at the next Python bytecode of the thread (sync tasks
    in threads: it cannot interrupt C code or a blocking system call), or from a signal handler
    (``-P processes``: it also interrupts ``time.sleep`` and most blocking calls).
    """

    def __init__(self, message: str = "soft time limit exceeded", *args: Any, **kwargs: Any) -> None:
        # no required argument: the thread pool raises it by class (PyThreadState_SetAsyncExc)
        super().__init__(message, *args, **kwargs)


class TimeLimitExceeded(TaskError):
    """The task's hard time limit passed. The task failed with this error and follows its retry policy.

    The processes pool killed (and replaced) the child running it; an async task was cancelled; a
    sync task in a thread could not be stopped: its thread was abandoned and runs on until the
    function returns (see the README, "Pools, limits and sizing").
    """

    def __init__(self, message: str = "time limit exceeded", *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)


class WorkerLostError(TaskError):
    """The child process running the task died (signal, ``os._exit``, out of memory).

    Only tasks that opted out of redelivery (``acks_late=False``) fail with it; the others are handed
    back and run again.
    """

    def __init__(self, message: str = "worker process lost", *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)


class ChordError(TaskError):
    """A chord's body did not run because a task of its header failed (or was revoked, expired or
    dead-lettered). The message names that task; ``AsyncResult.get()`` on the chord's result raises
    the header task's own exception instead (it looks at the header first, as Celery does)."""


class Replaced(CeleriacError):
    """Raised by :meth:`celeriac.Task.replace` once the replacement is sent: the task ends here, stores
    no result of its own and hands its place in the workflow (id, callbacks, chain, chord) over."""

    def __init__(self, task_id: str = "") -> None:
        super().__init__(f"task {task_id} was replaced")
        self.task_id = task_id


class Retry(CeleriacError):
    """Raised by :meth:`celeriac.Task.retry` to ask the worker to run the task again later.

    Args:
        exc: the exception that caused the retry, if any.
        countdown_s: delay before the next attempt.
    """

    def __init__(self, exc: BaseException | None = None, countdown_s: float = 0.0, eta_ms: int | None = None):
        super().__init__(f"retry in {countdown_s:.3f}s" + (f": {exc!r}" if exc else ""))
        self.exc = exc
        self.countdown_s = countdown_s
        self.eta_ms = eta_ms


class Reject(CeleriacError):
    """Raised by a task to refuse its message: it goes to the dead-letter queue with ``reason``."""

    def __init__(self, reason: str = "rejected by task") -> None:
        super().__init__(reason)
        self.reason = reason


class WorkerShutdown(BaseException):
    """Stop the worker now. A ``BaseException`` so user ``except Exception`` blocks cannot swallow it."""


def describe(exc: BaseException) -> dict[str, Any]:
    """A serializable description of an exception (type path, message)."""
    cls = type(exc)
    return {"type": f"{cls.__module__}.{cls.__qualname__}", "message": str(exc)}
