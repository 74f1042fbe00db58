"""Django: what Celery's Django fix-up does, for a project ported with the import edit.

Installed by itself when a :class:`~celeriac.Celeriac` app is created with ``DJANGO_SETTINGS_MODULE``
set (as Celery installs its fix-up), so Celery's recipe works as is::

    # proj/celery.py
    import os
    from celeriac import Celery

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")  # CELERY_BROKER_URL, ...
    app.autodiscover_tasks()  # every installed app's tasks module

What it does in a worker:

* ``django.setup()`` before the worker imports task modules (the ``import_modules`` signal), so
  ``tasks`` modules may import models;
* before and after each task (``task_prerun``/``task_postrun``, where the task runs: the pool's thread
  or child process), ``close_old_connections()``: a connection that broke or outlived
  ``CONN_MAX_AGE`` is closed, others are reused, as Django does around each request; and the caches'
  ``close_caches()`` after. Not in eager mode (a test's transaction stays open);
* in each child of the process pool (``worker_process_init``), the database connections inherited
  from the parent are dropped without a word to the server (closing them would break the parent's);
* a warning at start when ``DEBUG`` is on (Django then keeps every query in memory).

And in the web process: ``task.delay_on_commit(...)`` / ``task.apply_async_on_commit(...)`` send
once the transaction commits, never after a rollback (:meth:`celeriac.Task.delay_on_commit`).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from .. import signals
from ..context import current_request

if TYPE_CHECKING:
    from ..app import Celeriac

__all__ = ["close_inherited_connections", "fixup"]

logger = logging.getLogger("celeriac.contrib.django")


def fixup(app: Celeriac, env: str = "DJANGO_SETTINGS_MODULE") -> bool:
    """Connect the Django fix-up's receivers when ``env`` names a settings module and Django is
    installed; returns whether it did. Safe to call for many apps (receivers connect once)."""
    if not os.environ.get(env):
        return False
    try:
        import django  # noqa: F401  (the package only: settings are read when a worker starts)
    except ImportError:
        logger.warning("%s is set but Django is not installed: the Django fix-up is not applied", env)
        return False
    signals.import_modules.connect(_setup)
    signals.worker_init.connect(_worker_init)
    signals.worker_process_init.connect(_worker_process_init)
    signals.task_prerun.connect(_close_old_connections)
    signals.task_postrun.connect(_after_task)
    return True


def _setup(**_: Any) -> None:
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def _worker_init(**_: Any) -> None:
    from django.conf import settings

    _setup()
    if settings.DEBUG:
        logger.warning(
            "Django's DEBUG is on in this worker: Django keeps every SQL query in memory (a leak in a "
            "long-running worker); turn it off in production"
        )
    _close_old_connections()


def _eager() -> bool:
    request = current_request()
    return bool(request is not None and request.is_eager)


def _close_old_connections(**_: Any) -> None:
    if _eager():
        return
    from django.db import close_old_connections

    close_old_connections()


def _after_task(**_: Any) -> None:
    if _eager():
        return
    from django.core.cache import close_caches
    from django.db import close_old_connections

    close_old_connections()
    close_caches()


def close_inherited_connections() -> None:
    """Drop the database connections a forked process inherited, without closing them on the server
    (the parent still uses them): close the socket here, then let Django forget the connection."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if raw is None:
            continue
        try:
            os.close(raw.fileno())  # PostgreSQL/MySQL drivers; SQLite connections have no socket
        except (AttributeError, OSError, TypeError):
            pass
        try:
            connection.close()
        except Exception:  # the driver may complain about the socket closed above: it is gone
            connection.connection = None


def _worker_process_init(**_: Any) -> None:
    close_inherited_connections()
