"""A lean fork server for the process pool: a fresh interpreter that imports the app, not the worker.

A fork server forked from the worker holds everything the worker imported: asyncio, redis-py and
hiredis, the worker's loops (about 20 MiB), none of which a child uses, since children never talk to
Redis. Each forked child starts with those pages mapped, and their resident size counts in every
child's RSS (they are shared until written, but the kernel's accounting and most dashboards show
RSS). So the pool starts its fork server as a *new* interpreter instead (``sys.executable`` with the
worker's interpreter flags), which:

1. receives a :class:`LeanSpec` over its control socket: the worker's ``sys.path``, the modules that
   define the app and its tasks, where the app is (``module:attribute``), the task names the worker
   knows, the app's configuration and the logging set-up;
2. imports those modules and checks that the app it finds has every task the worker has;
3. answers ``ok`` and serves forks exactly as a forked server does (``forkserver.serve``).

:func:`start_server` returns the same :class:`~.forkserver.ForkServer` handle as a forked server.
When that cannot work it raises :class:`LeanUnavailable` with the reason, and the pool forks its
server from the worker instead (``pool.py``): tasks defined in ``__main__`` (a script that builds its
own worker cannot be imported again by name), an app that no module holds as an attribute, or a
server that did not find every task (tasks registered at run time rather than at import). These are
*expected* (the fallback only costs memory); anything else (the interpreter failed to start, a setting
that cannot travel) is not, and the pool says so louder.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...exceptions import CeleriacError
from .forkserver import ForkServer
from .ipc import Channel

if TYPE_CHECKING:
    from ...app import Celeriac
    from ...config import Config


class LeanUnavailable(CeleriacError):
    """A lean fork server cannot serve this app (the pool forks its server from the worker instead).

    Args:
        reason: why, for the log.
        expected: a normal case (tasks in ``__main__``, registered at run time, ...) rather than a
            failure worth a warning.
    """

    def __init__(self, reason: str, expected: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expected = expected


@dataclass(frozen=True)
class LeanSpec:
    """What a lean fork server needs to rebuild the worker's app (pickled to it)."""

    path: list[str]
    modules: list[str]
    app_module: str
    app_attribute: str
    tasks: list[str]
    conf: Config
    log_level: int = logging.WARNING
    log_format: str | None = None
    redis_log_level: int = logging.WARNING


def lean_spec(app: Celeriac) -> LeanSpec:
    """The spec of a lean fork server for ``app``.

    Raises:
        LeanUnavailable: ``app`` cannot be rebuilt in a new interpreter (expected).
    """
    from ..._registry import BUILTIN_TASKS

    user = [t for name, t in app.tasks.items() if name not in BUILTIN_TASKS]
    modules = list(dict.fromkeys(getattr(t.fn, "__module__", None) or "__main__" for t in user))
    if "__main__" in modules:
        raise LeanUnavailable(
            "tasks are defined in __main__, which a new interpreter cannot import by name", expected=True
        )
    location = _find_app(app, modules)
    if location is None:
        raise LeanUnavailable("no module holds the app as an attribute", expected=True)
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    spec = LeanSpec(
        path=list(sys.path),
        modules=[location[0], *(m for m in modules if m != location[0])],
        app_module=location[0],
        app_attribute=location[1],
        tasks=sorted(app.tasks),
        conf=app.conf,
        log_level=root.level,
        log_format=_format_of(formatter),
        redis_log_level=logging.getLogger("redis").level,
    )
    return spec


def _format_of(formatter: logging.Formatter | None) -> str | None:
    from ...outcomes import JsonFormatter

    if isinstance(formatter, JsonFormatter):
        return "json"  # the children log JSON lines too
    return formatter._fmt if formatter is not None else None


def _find_app(app: Celeriac, modules: list[str]) -> tuple[str, str] | None:
    """``(module, attribute)`` of a module that holds ``app``: task modules first, then any."""
    candidates = [*modules, *(name for name in list(sys.modules) if name not in modules)]
    for name in candidates:
        module = sys.modules.get(name)
        if module is None or name == "__main__":
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        if namespace.get("app") is app:
            return name, "app"
        for attribute, value in list(namespace.items()):
            if value is app:
                return name, attribute
    return None


def start_server(spec: LeanSpec) -> ForkServer:
    """Start a lean fork server.

    Raises:
        LeanUnavailable: it did not start, or could not rebuild the app (the reason says why).
    """
    import subprocess

    ctrl, ctrl_remote = socket.socketpair()
    status, status_remote = socket.socketpair()
    # src/celeriac/worker/process/lean.py -> src: the new interpreter imports this celeriac
    package_root = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    )
    code = (
        f"import sys; sys.path.insert(0, {package_root!r}); "
        "from celeriac.worker.process.lean import serve; serve()"
    )
    fds = (ctrl_remote.fileno(), status_remote.fileno())
    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    try:
        process = subprocess.Popen(
            [sys.executable, *flags, "-c", code, *map(str, fds)], pass_fds=fds, close_fds=True
        )
    finally:
        ctrl_remote.close()
        status_remote.close()
    channel = Channel(ctrl)
    try:
        channel.settimeout(60.0)  # imports the app: may take a while on a slow machine
        channel.send_bytes(pickle.dumps(spec))
        answer = pickle.loads(channel.recv_bytes())
    except (OSError, EOFError) as exc:
        answer = ("unavailable", f"no answer ({exc})", False)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:  # a setting that cannot travel
        answer = ("unavailable", f"the app's settings cannot be sent to it ({exc})", False)
    if answer[0] != "ok":
        ctrl.close()
        status.close()
        process.kill()
        process.wait()
        _, reason, expected = answer
        raise LeanUnavailable(f"the lean fork server could not start: {reason}", expected)
    return ForkServer(process.pid, ctrl, status, process)


def serve() -> None:
    """The lean fork server's main (``python -c ...``): rebuild the app, then serve forks."""
    ctrl = socket.socket(fileno=int(sys.argv[1]))
    status = socket.socket(fileno=int(sys.argv[2]))
    channel = Channel(ctrl)
    try:
        spec: LeanSpec = pickle.loads(channel.recv_bytes())
        app = _rebuild(spec)
    except BaseException as exc:  # tell the worker why; it falls back to forking the server itself
        import contextlib

        if isinstance(exc, LeanUnavailable):
            answer = ("unavailable", exc.reason, exc.expected)
        else:
            answer = ("unavailable", f"{type(exc).__name__}: {exc}", False)
        with contextlib.suppress(OSError):
            channel.send_bytes(pickle.dumps(answer))
        os._exit(1)
    import functools

    from .child import child_main
    from .forkserver import serve as serve_forks

    channel.send_bytes(pickle.dumps(("ok",)))
    try:
        serve_forks(ctrl, status, functools.partial(child_main, app))
    finally:
        os._exit(0)


def _rebuild(spec: LeanSpec) -> Celeriac:
    import importlib

    sys.path[:] = spec.path
    if spec.log_format == "json":
        from ...outcomes import JsonFormatter

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=spec.log_level, handlers=[handler])
    elif spec.log_format is not None:  # the worker's logging (the CLI's), before user code logs
        logging.basicConfig(level=spec.log_level, format=spec.log_format, stream=sys.stderr)
    else:
        logging.getLogger().setLevel(spec.log_level)
    logging.getLogger("redis").setLevel(spec.redis_log_level)
    for name in spec.modules:
        importlib.import_module(name)
    app: Celeriac = getattr(sys.modules[spec.app_module], spec.app_attribute)
    missing = sorted(set(spec.tasks) - set(app.tasks))
    if missing:
        raise LeanUnavailable(
            f"tasks registered at run time, not at import: {', '.join(missing[:5])}", expected=True
        )
    app.conf = spec.conf  # the worker's settings, command-line overrides included
    return app
