"""``shared_task``, ``current_app`` and ``current_task``, with Celery's meaning.

* ``@shared_task`` declares a task without naming an app (reusable apps, Django apps): it is
  registered on every app of the process, those created before and after; calling it, ``delay`` and
  ``apply_async`` go through the current app's copy.
* ``current_app``: the app created last in this process (or the one made current with
  ``app.set_current()``), as a proxy: ``current_app.conf``, ``current_app.send_task(...)``.
* ``current_task``: the task running in this context, or None-like outside a task
  (``current_task.request.id``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from . import _registry
from .context import current_request
from .exceptions import CeleriacError

if TYPE_CHECKING:
    from .app import Celeriac
    from .task import Task

__all__ = ["current_app", "current_task", "shared_task", "signature"]


def _app() -> Celeriac:
    app = _registry.get_current()
    if app is None:
        raise CeleriacError("no current app: create one first (app = Celeriac('proj', broker=...))")
    return cast("Celeriac", app)


class _AppProxy:
    """Stands for the current app; every attribute is read from it when used."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_app(), name)

    def __repr__(self) -> str:
        app = _registry.get_current()
        return f"<current_app: {app!r}>"

    def __bool__(self) -> bool:
        return _registry.get_current() is not None


class _TaskProxy:
    """Stands for the task running in this context (falsy outside a task)."""

    def _task(self) -> Task[Any, Any] | None:
        request = current_request()
        app = _registry.get_current()
        if request is None or app is None:
            return None
        return cast("Task[Any, Any] | None", app.tasks.get(request.task))

    def __getattr__(self, name: str) -> Any:
        task = self._task()
        if task is None:
            raise CeleriacError(f"current_task.{name}: no task is running in this context")
        return getattr(task, name)

    def __bool__(self) -> bool:
        return self._task() is not None

    def __repr__(self) -> str:
        return f"<current_task: {self._task()!r}>"


current_app: Celeriac = cast("Celeriac", _AppProxy())
current_task: Task[Any, Any] = cast("Task[Any, Any]", _TaskProxy())


class SharedTask:
    """A ``@shared_task``: the current app's copy of the task, found when used."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self._fn, self._options = fn, options
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", "task")

    def _task(self) -> Task[Any, Any]:
        app = _app()
        return app.register_shared(self._fn, self._options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._task()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task(), name)

    def __repr__(self) -> str:
        return f"<shared_task {getattr(self._fn, '__qualname__', self._fn)}>"


def shared_task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a task for every app (Celery's ``shared_task``): ``@shared_task`` or
    ``@shared_task(bind=True, base=MyTask, ...)`` with ``@app.task``'s options."""

    def declare(func: Callable[..., Any]) -> Any:
        _registry.shared.append((func, dict(options)))
        for app in list(_registry.apps):
            app.register_shared(func, dict(options))
        return SharedTask(func, dict(options))

    return declare(fn) if fn is not None else declare


def signature(varies: Any, args: Any = (), kwargs: Any = None, **options: Any) -> Any:
    """Celery's ``signature(name_or_task, args, kwargs, **options)``: a signature bound to the
    current app (a task's own signature when given a task)."""
    from .task import Signature

    if isinstance(varies, Signature):
        return varies
    name = getattr(varies, "name", varies)
    app = _registry.get_current()
    task = app.tasks.get(name) if app is not None else None
    return Signature(name, tuple(args), dict(kwargs or {}), dict(options), app=app, task=task)
