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
    │   ├── TaskRevokedError        the task was revoked before it ran (reserved: nothing revokes yet)
    │   │   └── TaskExpiredError    ``expires`` passed before a worker started it
    │   ├── MaxRetriesExceededError
    │   ├── SoftTimeLimitExceeded   raised inside a task when its ``soft_time_limit`` passes
    │   ├── TimeLimitExceeded       the task's ``time_limit`` passed: it was ended (or abandoned)
    │   └── WorkerLostError         the process running the task died (``-P processes``)
    ├── Retry                       raised by ``Task.retry()``: control flow, not a failure
    ├── Reject                      raised by a task to dead-letter (or requeue) its own message
    └── Ignore                      raised by a task to end with nothing recorded

``WorkerShutdown`` derives from ``BaseException`` on purpose: a task's ``except Exception`` must not
swallow the worker's request to stop. ``AppLoadError`` (``celeriac.cli``) is a ``CeleriacError`` too.
Bad values raise ``ConfigurationError``, which is also a ``ValueError``. Two documented exceptions
keep Python's own types: calling a task with arguments that do not fit its signature raises
``TypeError``, as calling the function would; and ``celeriac.testing``'s test servers raise
``RuntimeError`` when a ``redis-server`` cannot start.
"""

from __future__ import annotations

import re
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
    which is stored instead of the value. ``size`` and ``limit`` are in bytes (0 when rebuilt from a
    stored result, which keeps the message only)."""

    def __init__(self, message: str, size: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class DecodeError(CeleriacError):
    """Bytes that should hold a celeriac message or result could not be decoded."""

    def __init__(self, reason: str, data: bytes = b"") -> None:
        super().__init__(reason)
        self.data = data


class NotRegistered(CeleriacError, KeyError):
    """No task with this name is registered in the app."""

    def __str__(self) -> str:
        name = self.args[0] if self.args else ""
        # rebuilt from a stored result (AsyncResult.get), the argument is this sentence already
        if isinstance(name, str) and _NOT_REGISTERED.fullmatch(name):
            return name
        return f"task {name!r} is not registered"


_NOT_REGISTERED = re.compile(r"""task (['"]).*\1 is not registered""", re.DOTALL)


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
    """The task was revoked and did not run. Reserved: nothing revokes yet (revoke arrives with the
    workflow work); today only its subclass :class:`TaskExpiredError` is raised."""


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
    function returns (see docs/pools.md, "Time limits").
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
        countdown_s: delay before the next attempt; None: the task's policy decides
            (``default_retry_delay``, or the backoff when ``retry_backoff`` is set).
        eta_ms: run the next attempt at this time (epoch ms) instead; wins over ``countdown_s``.
        max_retries: this retry's limit, instead of the call's or the task's ``max_retries``.
    """

    def __init__(
        self,
        exc: BaseException | None = None,
        countdown_s: float | None = 0.0,
        eta_ms: int | None = None,
        max_retries: int | None = None,
    ):
        when = "later" if countdown_s is None else f"in {countdown_s:.3f}s"
        super().__init__(f"retry {when}" + (f": {exc!r}" if exc else ""))
        self.exc = exc
        self.countdown_s = countdown_s
        self.eta_ms = eta_ms
        self.max_retries = max_retries


class Reject(CeleriacError):
    """Raised by a task to refuse its message: it goes to the dead-letter queue with ``reason``;
    with ``requeue=True`` it is handed back to run again (``max_deliveries`` still bounds it), as
    Celery's ``Reject(requeue=True)``."""

    def __init__(self, reason: Any = "rejected by task", requeue: bool = False) -> None:
        super().__init__(str(reason))
        self.reason = reason
        self.requeue = requeue


class Ignore(CeleriacError):
    """Raised by a task to end without a recorded outcome: the message is acked, no result or error
    is stored (Celery's ``Ignore``: the task took care of its own state)."""


class WorkerShutdown(BaseException):
    """Raised by a task to stop its worker: the task's delivery is handed back (it runs again on
    another worker; ``max_deliveries`` bounds a task that always raises it) and the worker stops warm.
    A ``BaseException`` so user ``except Exception`` blocks cannot swallow it."""
