"""Import the app named by ``-A``: ``package.module:attribute``, ``package.module.attribute`` (Celery's
spelling) or ``package.module`` (attribute ``app`` or ``celery``, the one app it defines, or its
``celery`` submodule's app, as Celery searches).

Every failure is a :class:`AppLoadError` whose message says what to do next: a misspelt module, a
missing attribute (listing the apps the module does define), or an object that is not a Celeriac app.
An error raised by the user's own module while it imports is shown with its traceback, since that is
a bug in their code, not a usage error.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

from ..app import Celeriac
from ..exceptions import CeleriacError, ConfigurationError

DEFAULT_ATTRIBUTE = "app"
#: the attributes `-A module` looks for, in Celery's order (then a `module.celery` submodule)
DEFAULT_ATTRIBUTES = ("app", "celery")


class AppLoadError(CeleriacError):
    """The ``-A/--app`` value does not name an importable Celeriac app (a usage error: exit status 2).

    Not a ``click.UsageError``, so that the worker's lean image (``_run_worker.py``) loads apps
    without importing click; the CLI turns it into one (``_common.State.app``).
    """


def load_app(spec: str) -> Celeriac:
    """Import the app named by ``spec`` (``module:attribute`` or ``module``).

    The current directory is put on ``sys.path`` first, as ``python -m`` would, so that
    ``celeriac worker -A tasks:app`` works from the project directory.

    Raises:
        AppLoadError: the module cannot be imported, the attribute is missing, or it is not a
            :class:`~celeriac.Celeriac`.
    """
    module_name, _, attribute = spec.strip().partition(":")
    if not module_name:
        raise AppLoadError(f"-A {spec!r}: give the app as 'package.module:app'")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if not attribute and "." in module_name and not _module_exists(module_name):
        # Celery's `-A proj.celery_app.app` / `-A celery_worker.celery`: module.attribute
        module_name, _, attribute = module_name.rpartition(".")
    module = _import(module_name)
    if not attribute:
        attribute = _find_app(module_name, module)
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise AppLoadError(_missing(module_name, attribute, module))
        obj = getattr(obj, part)
    if not isinstance(obj, Celeriac):
        raise AppLoadError(
            f"{module_name}:{attribute} is a {type(obj).__name__}, not a Celeriac app "
            f"(expected `{attribute} = Celeriac(...)` in {module_name})"
        )
    return obj


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_prefix(exc.name, module_name):
            raise AppLoadError(
                f"cannot import {module_name!r}: no module named {exc.name!r} "
                f"(run from the directory that contains it, or put it on PYTHONPATH; cwd is {os.getcwd()})"
            ) from None
        raise AppLoadError(_import_failed(module_name, exc)) from None
    except ConfigurationError:
        # an invalid setting (a CELERIAC_* variable the app read at import): the error names it, and
        # the user's code is not at fault, so one `Error:` line (exit 1) rather than a traceback
        raise
    except Exception as exc:  # the user's module raised while importing: show where
        raise AppLoadError(_import_failed(module_name, exc)) from None


def _module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent is not a package, or not importable
        return False


def _find_app(module_name: str, module: Any) -> str:
    """The attribute holding the app of ``-A module``: ``app``, ``celery``, the one app the module
    defines, or ``module.celery``'s (Celery's search)."""
    for name in DEFAULT_ATTRIBUTES:
        if isinstance(getattr(module, name, None), Celeriac):
            return name
    apps = [name for name, value in vars(module).items() if isinstance(value, Celeriac)]
    if len(apps) == 1:
        return str(apps[0])
    if not apps and hasattr(module, "__path__") and _module_exists(f"{module_name}.celery"):
        submodule = _import(f"{module_name}.celery")
        for name in (*DEFAULT_ATTRIBUTES, *vars(submodule)):
            if isinstance(getattr(submodule, name, None), Celeriac):
                return f"celery.{name}"
    raise AppLoadError(_missing(module_name, DEFAULT_ATTRIBUTE, module))


def _is_prefix(name: str, module_name: str) -> bool:
    """True when ``name`` is ``module_name`` or one of its parent packages."""
    return module_name == name or module_name.startswith(name + ".")


def _import_failed(module_name: str, exc: BaseException) -> str:
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    return f"importing {module_name!r} failed with {type(exc).__name__}: {exc}\n\n{trace}"


def _missing(module_name: str, attribute: str, module: Any) -> str:
    apps = sorted(name for name, value in vars(module).items() if isinstance(value, Celeriac))
    hint = (
        f"; it defines {', '.join(apps)}: use -A {module_name}:{apps[0]}"
        if apps
        else f"; define `{DEFAULT_ATTRIBUTE} = Celeriac(...)` there, or name it: -A {module_name}:NAME"
    )
    return f"module {module_name!r} has no attribute {attribute!r}{hint}"
