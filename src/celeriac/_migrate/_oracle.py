"""The verdicts, asked of celeriac itself rather than kept in a table that could drift from the code.

Each ``check_*`` returns ``(status, edit, note)``. A setting is tried on a fresh ``Config``, a task
option on a throw-away ``@app.task`` of an in-memory app, an app argument on ``Celeriac(...)``, a
command-line flag on the real ``celeriac`` click command, an import on the installed package. Only
:data:`DIFFERENCES` is written by hand: what works but behaves differently, which no import can tell.
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any

from ..exceptions import CeleriacError
from ._findings import Status

Verdict = tuple[Status, str, str]

#: marks a value the scanner could not read as a literal (an env lookup, a computed value)
UNKNOWN: Any = object()

# what works but behaves differently: subject -> note (subjects as the scanner names them)
DIFFERENCES: dict[str, str] = {
    "task_ignore_result": "celeriac ignores results unless asked (default True; Celery: False)",
    "ignore_result": "celeriac ignores results unless asked: set ignore_result=False where you read them",
    "task_acks_late": "celeriac acks late by default (at-least-once): tasks may run twice, keep them "
    "idempotent",
    "acks_late": "celeriac acks late by default (at-least-once)",
    "worker_prefetch_multiplier": "celeriac never prefetches beyond free slots; the multiplier only bounds "
    "one fetch",
    "visibility_timeout": "celeriac has a lease per delivery (lease_s, 10 s), renewed while the task runs, "
    "instead of one visibility timeout",
    "task_serializer": "celeriac's default is msgpack; 'json' round-trips the same types",
    "result_backend": "results are written only for tasks that store them, never on send",
    "AsyncResult.get": "results are ignored by default: the task must set ignore_result=False",
    "celery beat": "celeriac beat is leaderless: any number of instances may run, each slot fires once",
    "celery flower": "use `celeriac dashboard` (reads Redis, keeps no state of its own)",
    "--without-gossip": "accepted; celeriac has no gossip to turn off",
    "--without-mingle": "accepted; celeriac has no mingle to turn off",
    "--without-heartbeat": "accepted; celeriac's liveness is one key per worker with a TTL",
    "-O": "celeriac never prefetches beyond free slots: every worker behaves as -O fair",
}


def with_note(status: Status, edit: str, subject: str) -> Verdict:
    """``status``, turned into DIFFERS when celeriac does this differently."""
    note = DIFFERENCES.get(subject, "")
    if status is Status.PORTS and note:
        return Status.DIFFERS, edit, note
    return status, edit, note


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # "invalid setting '@app.task options of x': Task.__init__() got ..." -> what follows the colon
    return re.sub(r"^invalid setting '[^']*': ", "", text)


# ---- imports ----------------------------------------------------------------------------------------
def celeriac_module(module: str) -> str:
    """``celery.x`` -> ``celeriac.x`` (``celery`` -> ``celeriac``)."""
    return "celeriac" + module[len("celery") :]


@functools.cache
def _module(name: str) -> tuple[Any, str]:
    try:
        return importlib.import_module(name), ""
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("celeriac"):
            return None, f"needs {exc.name!r} installed"
        return None, "no such module"
    except Exception as exc:  # an optional integration whose framework is missing or unconfigured
        return None, _reason(exc)


def check_import(module: str, name: str | None = None) -> Verdict:
    """``from celery.x import name`` (or ``import celery.x`` when ``name`` is None)."""
    if module == "kombu" or module.startswith("kombu."):
        return (
            Status.EDIT,
            "remove it: queues are plain names in celeriac (task_routes, queue=, -Q)",
            "celeriac has no kombu layer",
        )
    if not (module == "celery" or module.startswith("celery.")):
        return Status.PORTS, "", ""
    target = celeriac_module(module)
    mod, problem = _module(target)
    if mod is None:
        return Status.EDIT, f"no {target}: remove the import", problem
    if name is None or name == "*":
        return Status.PORTS, "", ""
    if hasattr(mod, name):
        return with_note(Status.PORTS, "", name)
    if name == "Celery" and hasattr(mod, "Celeriac"):
        return Status.EDIT, f"from {target} import Celeriac (and Celery(...) -> Celeriac(...))", ""
    return Status.EDIT, f"{target} has no {name!r}: remove it", ""


# ---- settings, app arguments, task options -------------------------------------------------------
_PROBES: tuple[Any, ...] = (None, True, 1, 1.0, "x", (), {})


def _try_setting(name: str, value: Any) -> str | None:
    key = (name, repr(value))
    if key not in _SETTING_CACHE:
        _SETTING_CACHE[key] = _try_setting_uncached(name, value)
    return _SETTING_CACHE[key]


_SETTING_CACHE: dict[tuple[str, str], str | None] = {}


def _try_setting_uncached(name: str, value: Any) -> str | None:
    from ..config import Config

    try:
        Config().update({name: value})
    except (CeleriacError, TypeError, ValueError) as exc:
        return _reason(exc)
    return None


def check_setting(name: str, value: Any = UNKNOWN) -> Verdict:
    """A setting as Celery names it (``task_acks_late``, ``CELERY_ALWAYS_EAGER``)."""
    if value is not UNKNOWN:
        problem = _try_setting(name, value)
        if problem is None:
            return with_note(Status.PORTS, "", name)
        return Status.EDIT, "change or remove it", problem
    # a value the scanner cannot read: is the name itself known?
    problems = [_try_setting(name, probe) for probe in _PROBES]
    if any(p is None for p in problems):
        return with_note(Status.PORTS, "", name)
    first = next(p for p in problems if p)
    if re.search(r"unknown setting|not supported|has no|instead", first, re.IGNORECASE):
        return Status.EDIT, "change or remove it", first
    return with_note(Status.PORTS, "", name)  # known name; only the probes' values were refused


def check_django_setting(name: str, value: Any = UNKNOWN) -> tuple[str, Verdict]:
    """``CELERY_X`` of a settings module read with ``namespace="CELERY"``: tried as ``x``, then as the
    old upper-case name. Returns the name the verdict is about."""
    lower = name[len("CELERY_") :].lower() if name.startswith("CELERY_") else name.lower()
    verdict = check_setting(lower, value)
    if verdict[0] is Status.EDIT:
        old = check_setting(name, value)
        if old[0] is not Status.EDIT:
            return name, old
    return lower, verdict


def _sandbox() -> Any:
    from ..app import Celeriac

    return Celeriac("celery_check", broker="memory://")


def check_task_option(name: str, value: Any = UNKNOWN) -> Verdict:
    """An option of ``@app.task(...)`` / ``@shared_task(...)``."""
    values = [value] if value is not UNKNOWN else [True, 1, 1.0, "x", None, ()]
    problem = ""
    for candidate in values:

        def fn(*args: Any, **kwargs: Any) -> None:
            return None

        options = {name: candidate}
        if name != "name":
            options["name"] = "celery_check.fn"
        try:
            _sandbox().task(**options)(fn)
        except (CeleriacError, TypeError, ValueError) as exc:
            problem = problem or _reason(exc)
            continue
        return with_note(Status.PORTS, "", name)
    return Status.EDIT, f"remove {name}=", problem


def check_app_argument(name: str, value: Any = UNKNOWN) -> Verdict:
    """A keyword argument of ``Celery(...)``."""
    from ..app import Celeriac

    values: list[Any] = [value] if value is not UNKNOWN else [None, "memory://", True, 1, "x", ()]
    problem = ""
    for candidate in values:
        kwargs: dict[str, Any] = {name: candidate}
        try:
            Celeriac("celery_check", **kwargs)
        except (CeleriacError, TypeError, ValueError) as exc:
            problem = problem or _reason(exc)
            continue
        return with_note(Status.PORTS, "", name)
    return Status.EDIT, f"remove {name}=", problem


def check_app_method(name: str) -> Verdict:
    """``app.<name>(...)`` on a Celery app object."""
    from ..app import Celeriac

    if hasattr(Celeriac, name):
        return with_note(Status.PORTS, "", name)
    return Status.EDIT, f"the celeriac app has no {name}(): remove the call", ""
