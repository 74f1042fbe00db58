"""Flask: tasks run inside the Flask app's context, as in Flask's "Background Tasks with Celery".

Flask's pattern subclasses Celery's ``Task.__call__``; here one call does it::

    from flask import Flask
    from celeriac.contrib.flask import celery_init_app

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config.from_mapping(CELERY={"broker_url": "redis://localhost", "task_ignore_result": True})
        celery_init_app(app)
        return app

``celery_init_app(app)`` creates the celeriac app from ``app.config["CELERY"]`` (Celery's setting
names; ``app.config["CELERIAC"]`` too), stores it as ``app.extensions["celery"]``, makes it the current
app (so ``@shared_task`` tasks use it), and makes every task of it run inside
``app.app_context()``: ``current_app``, ``flask.g``, and extensions such as Flask-SQLAlchemy's
``db.session`` work in tasks, in every pool and in eager mode. The context is pushed by the
``task_prerun`` signal and popped by ``task_postrun`` where the task runs.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .. import signals
from ..app import Celeriac

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["celery_init_app", "init_app"]


#: the attribute of a bound celeriac app that holds its Flask app (they live and die together)
_FLASK_APP = "_flask_app"
#: the app contexts pushed for running tasks, by task id
_contexts: dict[str | None, list[Any]] = {}
_lock = threading.Lock()


def _push(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    app: Flask | None = getattr(getattr(sender, "app", None), _FLASK_APP, None)
    if app is None:
        return
    context = app.app_context()
    context.push()
    with _lock:
        _contexts.setdefault(task_id, []).append(context)


def _pop(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    with _lock:
        stack = _contexts.get(task_id)
        context = stack.pop() if stack else None
        if stack == []:
            del _contexts[task_id]
    if context is not None:
        context.pop()


def celery_init_app(app: Flask, celery_app: Celeriac | None = None) -> Celeriac:
    """Bind a celeriac app to the Flask ``app`` (made from ``app.config["CELERY"]`` unless given):
    its tasks run in ``app.app_context()``. Returns the celeriac app."""
    if celery_app is None:
        settings = {**app.config.get("CELERY", {}), **app.config.get("CELERIAC", {})}
        celery_app = Celeriac(app.name, **settings)
    else:
        celery_app.set_current()
    setattr(celery_app, _FLASK_APP, app)
    signals.task_prerun.connect(_push)  # once: connect() ignores a receiver already connected
    signals.task_postrun.connect(_pop)
    app.extensions["celery"] = celery_app
    app.extensions["celeriac"] = celery_app
    return celery_app


#: the same, under a shorter name
init_app = celery_init_app
