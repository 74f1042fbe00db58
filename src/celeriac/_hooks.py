"""Task class hooks and the run signals, around the call itself, wherever the task runs.

``Task.bound`` wraps the call with :func:`instrumented` only when the task's class overrides a hook
(``before_start``, ``on_success``, ``on_failure``, ``on_retry``, ``after_return``) or a run signal
has a receiver; every pool (in the process pool: in the child) and eager mode call what ``bound``
returns, so the hooks run in the one execution path, next to the task. The outcome the hooks report
(retry or failure) is decided by :func:`will_retry`, the rule :meth:`Execution.finish` applies too.
"""

from __future__ import annotations

import logging
import traceback as _tb
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .context import current_request
from .exceptions import Ignore, Reject, Retry
from .signals import task_failure, task_postrun, task_prerun, task_retry, task_success

if TYPE_CHECKING:
    from .task import Task

logger = logging.getLogger("celeriac.task")


class ExceptionInfo:
    """Celery's ``einfo``: the exception, its type, and its formatted traceback (``str(einfo)``)."""

    def __init__(self, exc: BaseException) -> None:
        self.exception = exc
        self.type = type(exc)
        self.tb = exc.__traceback__
        self.traceback = "".join(_tb.format_exception(type(exc), exc, exc.__traceback__))

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.exception!r}>"


def will_retry(task: Task[Any, Any], retries: int, max_retries: int | None, exc: BaseException) -> bool:
    """True when ``exc`` makes the task run again (``self.retry()`` or ``autoretry_for``, retries
    left); the same rule as :meth:`~celeriac.execution.Execution.finish`."""
    if isinstance(exc, Retry):
        limit = exc.max_retries if exc.max_retries is not None else max_retries
    elif (
        task.autoretry_for
        and isinstance(exc, task.autoretry_for)
        and not isinstance(exc, task.dont_autoretry_for)
    ):
        limit = max_retries
    else:
        return False
    if limit is None:
        limit = task.max_retries
    return limit is None or retries < limit


def _hook(name: str, fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # a broken hook is logged; it does not change the task's outcome
        logger.exception("%s raised", name)


class _Run:
    """One call's hook dispatch (shared by the sync and the async wrappers)."""

    __slots__ = ("args", "kwargs", "task", "task_id")

    def __init__(self, task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.task, self.args, self.kwargs = task, args, kwargs
        request = current_request()
        self.task_id = request.id if request is not None else None

    def before(self) -> None:
        t = self.task
        task_prerun.send(sender=t, task_id=self.task_id, task=t, args=self.args, kwargs=self.kwargs)
        _hook("before_start", t.before_start, self.task_id, self.args, self.kwargs)

    def success(self, value: Any) -> None:
        t = self.task
        _hook("on_success", t.on_success, value, self.task_id, self.args, self.kwargs)
        task_success.send(sender=t, result=value)
        self.after("SUCCESS", value, None)

    def failed(self, exc: BaseException) -> None:
        t = self.task
        if isinstance(exc, Ignore):
            self.after("IGNORED", exc, None)
            return
        einfo = ExceptionInfo(exc)
        request = current_request()
        retries = request.retries if request is not None else 0
        max_retries = request.max_retries if request is not None else None
        if not isinstance(exc, Reject) and will_retry(t, retries, max_retries, exc):
            cause = exc.exc if isinstance(exc, Retry) and exc.exc is not None else exc
            _hook("on_retry", t.on_retry, cause, self.task_id, self.args, self.kwargs, einfo)
            task_retry.send(sender=t, request=request, reason=cause, einfo=einfo)
            self.after("RETRY", exc, einfo)
            return
        if isinstance(exc, Retry) and exc.exc is not None:
            exc = exc.exc  # retries exhausted: the task fails with the cause, as Execution.finish says
        _hook("on_failure", t.on_failure, exc, self.task_id, self.args, self.kwargs, einfo)
        task_failure.send(
            sender=t,
            task_id=self.task_id,
            exception=exc,
            args=self.args,
            kwargs=self.kwargs,
            traceback=exc.__traceback__,
            einfo=einfo,
        )
        self.after("FAILURE", exc, einfo)

    def after(self, state: str, retval: Any, einfo: ExceptionInfo | None) -> None:
        t = self.task
        _hook("after_return", t.after_return, state, retval, self.task_id, self.args, self.kwargs, einfo)
        task_postrun.send(
            sender=t,
            task_id=self.task_id,
            task=t,
            args=self.args,
            kwargs=self.kwargs,
            retval=retval,
            state=state,
        )


def instrumented(
    task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any], call: Callable[[], Any]
) -> Callable[[], Any]:
    """``call`` with the task's hooks and the run signals around it."""
    if task.is_async:

        def run_async() -> Any:
            async def body() -> Any:
                run = _Run(task, args, kwargs)
                run.before()
                try:
                    value = await call()
                except Exception as exc:
                    run.failed(exc)
                    raise
                run.success(value)
                return value

            return body()

        return run_async

    def run_sync() -> Any:
        run = _Run(task, args, kwargs)
        run.before()
        try:
            value = call()
        except Exception as exc:
            run.failed(exc)
            raise
        run.success(value)
        return value

    return run_sync
