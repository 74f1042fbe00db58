"""The process's current app and the shared tasks (``@shared_task``): who registers what where.

Kept free of imports so that the app (which registers itself and picks up shared tasks when it is
created) and :mod:`celeriac.shared` (which reads them) do not import each other.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

#: every app created in this process (shared tasks are registered on each)
apps: weakref.WeakSet[Any] = weakref.WeakSet()
#: (function, options) of each @shared_task, in declaration order
shared: list[tuple[Callable[..., Any], dict[str, Any]]] = []
#: the current app: the last one created, or the one ``set_current()`` named
current: list[Any] = []
#: the app created last (set when it registers its built-in tasks): signatures built without a task
#: (``group([])``) are sent through it. Here, not in :mod:`celeriac.canvas`: an app does not load canvas
last_app: list[Any] = []
#: tasks every app registers for workflows (not counted as the user's tasks in logs)
BUILTIN_TASKS = frozenset({"celeriac.map", "celeriac.starmap", "celeriac.accumulate", "celeriac.run_canvas"})


def set_current(app: Any) -> None:
    current[:] = [weakref.ref(app)]


def get_current() -> Any:
    """The current app, or None."""
    if current:
        app = current[0]()
        if app is not None:
            return app
    return None
