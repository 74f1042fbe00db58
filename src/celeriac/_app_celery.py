"""The app's methods with Celery's names and meaning: configuration from objects, modules and
environment variables, autodiscovery, shared tasks, the current app. A mixin of
:class:`~celeriac.app.Celeriac`, kept apart so that the app module stays about sending."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _registry, signals
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .config import Config
    from .message import Message
    from .task import Task


class CeleryMethods:
    """Celery's app methods (``config_from_object``, ``autodiscover_tasks``, ...)."""

    conf: Config
    tasks: dict[str, Task[Any, Any]]
    _autodiscover: list[tuple[Any, str]]

    def task(self, *args: Any, **options: Any) -> Any:  # pragma: no cover - the app's own
        raise NotImplementedError

    def set_current(self) -> None:
        """Make this the current app (``celeriac.current_app``, ``@shared_task`` calls)."""
        _registry.set_current(self)

    def register_shared(self, fn: Callable[..., Any], options: dict[str, Any]) -> Task[Any, Any]:
        """This app's copy of a ``@shared_task`` (registered on first need)."""
        for task in self.tasks.values():
            if task.fn is fn:
                return task
        registered: Task[Any, Any] = self.task(**options)(fn)
        return registered

    # ---- configuration (Celery's methods) ------------------------------------------------------
    def config_from_object(
        self, obj: Any, namespace: str | None = None, *, silent: bool = False, force: bool = True
    ) -> None:
        """Read settings from an object, a module, or its name (``"proj.celeryconfig"``,
        ``"django.conf:settings"``); with ``namespace="CELERY"``, the ``CELERY_``-prefixed names
        (a Django settings module). Celery's old upper-case names are read too.

        Raises:
            ConfigurationError: a setting is invalid or not supported (the error names it), or the
                module cannot be imported (unless ``silent``).
        """
        if isinstance(obj, str):
            try:
                obj = _import_object(obj)
            except ImportError as exc:
                if silent:
                    return
                raise ConfigurationError("config_from_object", f"cannot import {obj!r}: {exc}") from None
        self.conf.from_object(obj, namespace=namespace)

    def config_from_envvar(self, variable_name: str, *, silent: bool = False, force: bool = True) -> bool:
        """``config_from_object`` of the module named by an environment variable."""
        import os

        module = os.environ.get(variable_name)
        if not module:
            if silent:
                return False
            raise ConfigurationError(
                "config_from_envvar", f"the environment variable {variable_name} is not set (a module name)"
            )
        self.config_from_object(module, silent=silent)
        return True

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
        related_name: str = "tasks",
        force: bool = False,
    ) -> None:
        """Import ``<package>.tasks`` of each package, lazily: when a worker starts (or at once with
        ``force=True``). Without packages: Django's ``INSTALLED_APPS``, read when Django is
        configured, as Celery does. A package without a ``tasks`` module is skipped."""
        self._autodiscover.append((packages, related_name))
        if force:
            self.discover_tasks()

    def discover_tasks(self) -> list[str]:
        """Import the modules ``autodiscover_tasks`` named (once each); returns their names."""
        import importlib

        imported: list[str] = []
        for packages, related_name in self._autodiscover:
            for package in _packages(packages):
                name = f"{package}.{related_name}"
                try:
                    importlib.import_module(name)
                except ModuleNotFoundError as exc:
                    if exc.name in (name, package):
                        continue  # no tasks module in this package: nothing to discover
                    raise
                imported.append(name)
        return imported


def _import_object(spec: str) -> Any:
    """``"module"``, ``"module:attr"`` or ``"module.attr"`` (when ``module.attr`` is no module)."""
    import importlib

    module_name, _, attribute = spec.partition(":")
    if not attribute:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if "." not in module_name or exc.name != module_name:
                raise
            module_name, _, attribute = module_name.rpartition(".")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _packages(packages: Any) -> list[str]:
    if callable(packages):
        packages = packages()
    if packages is None:  # Django: every installed app, as Celery's Django fixup reads them
        try:
            from django.apps import apps  # type: ignore[import-not-found,unused-ignore]
            from django.conf import settings  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return []
        if not settings.configured:
            return []
        if apps.ready:
            return [config.name for config in apps.get_app_configs()]
        return [name for name in settings.INSTALLED_APPS if isinstance(name, str)]
    return list(packages)


def apply_router(
    router: Any, name: str, args: Sequence[Any], kwargs: Mapping[str, Any], task: Task[Any, Any] | None
) -> str | None:
    """The queue one of Celery's router forms gives a task, or None (the next router decides)."""
    if callable(router):
        found = router(name, args, kwargs, {}, task=task)
    elif name in router:
        found = router[name]
    else:
        found = next((v for k, v in router.items() if fnmatch.fnmatchcase(name, k)), None)
    if isinstance(found, Mapping):
        found = found.get("queue")
    if found is not None and not isinstance(found, str):
        raise ConfigurationError("task_routes", f"a router gave {found!r} for {name}: expected a queue name")
    return found or None


def publish_signal(signal: signals.Signal, message: Message, queue: str) -> None:
    """``before_task_publish``/``after_task_publish`` with Celery's arguments (protocol 2 shape)."""
    headers = {"id": message.id, "task": message.task, "retries": message.retries, "eta": message.eta_ms}
    body: tuple[Any, ...] = (message.args, dict(message.kwargs), {})
    if signal is signals.before_task_publish:
        signal.send(
            sender=message.task,
            body=body,
            exchange="",
            routing_key=queue,
            headers=headers,
            properties={},
            declare=[],
            retry_policy=None,
        )
    else:
        signal.send(sender=message.task, body=body, exchange="", routing_key=queue, headers=headers)
