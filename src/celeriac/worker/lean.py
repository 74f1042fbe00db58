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
3. answers ``ok`` and serves forks exactly as before (``child._serve``).

When that cannot work, the pool forks its server from the worker as before (:func:`lean_spec`
returns why, and the pool logs it): tasks defined in ``__main__`` (a script that builds its own
worker cannot be imported again by name), an app that no module holds as an attribute, or a server
that did not find every task (tasks registered at run time rather than at import).
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..config import Config

_FRAME = struct.Struct("!Q")


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


def lean_spec(app: Celeriac) -> tuple[LeanSpec | None, str]:
    """The spec of a lean fork server for ``app``, or None and the reason it cannot have one."""
    from ..canvas import BUILTIN_TASKS

    user = [t for name, t in app.tasks.items() if name not in BUILTIN_TASKS]
    modules = list(dict.fromkeys(getattr(t.fn, "__module__", None) or "__main__" for t in user))
    if "__main__" in modules:
        return None, "tasks are defined in __main__, which a new interpreter cannot import by name"
    location = _find_app(app, modules)
    if location is None:
        return None, "no module holds the app as an attribute"
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
        log_format=formatter._fmt if formatter is not None else None,
        redis_log_level=logging.getLogger("redis").level,
    )
    return spec, ""


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


def start_server(spec: LeanSpec) -> tuple[Any, socket.socket, socket.socket]:
    """Start a lean fork server; return ``(process, control socket, status socket)``.

    Raises:
        OSError: it did not start, or could not rebuild the app (the message says why).
    """
    import subprocess

    ctrl, ctrl_remote = socket.socketpair()
    status, status_remote = socket.socketpair()
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        f"import sys; sys.path.insert(0, {package_root!r}); from celeriac.worker.lean import serve; serve()"
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
    try:
        ctrl.settimeout(60.0)  # imports the app: may take a while on a slow machine
        send_frame(ctrl, pickle.dumps(spec))
        answer = recv_frame(ctrl).decode(errors="replace")
    except OSError as exc:
        answer = f"no answer ({exc})"
    except (pickle.PicklingError, TypeError, AttributeError) as exc:  # a setting that cannot travel
        answer = f"the app's settings cannot be sent to it ({exc})"
    if answer != "ok":
        ctrl.close()
        status.close()
        process.kill()
        process.wait()
        raise OSError(f"the lean fork server could not start: {answer}")
    return process, ctrl, status


def send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_FRAME.pack(len(data)) + data)


def recv_frame(sock: socket.socket) -> bytes:
    from .child import _recv_exactly

    (size,) = _FRAME.unpack(_recv_exactly(sock, _FRAME.size))
    return _recv_exactly(sock, size)


def serve() -> None:
    """The lean fork server's main (``python -c ...``): rebuild the app, then serve forks."""
    ctrl = socket.socket(fileno=int(sys.argv[1]))
    status = socket.socket(fileno=int(sys.argv[2]))
    try:
        spec: LeanSpec = pickle.loads(recv_frame(ctrl))
        app = _rebuild(spec)
    except BaseException as exc:  # tell the worker why; it falls back to forking the server itself
        import contextlib

        with contextlib.suppress(OSError):
            send_frame(ctrl, f"{type(exc).__name__}: {exc}".encode())
        os._exit(1)
    import functools

    from .child import _serve, child_main

    send_frame(ctrl, b"ok")
    try:
        _serve(ctrl, status, functools.partial(child_main, app))
    finally:
        os._exit(0)


def _rebuild(spec: LeanSpec) -> Celeriac:
    import importlib

    sys.path[:] = spec.path
    if spec.log_format is not None:  # the worker's logging (the CLI's), before user code logs
        logging.basicConfig(level=spec.log_level, format=spec.log_format, stream=sys.stderr)
    else:
        logging.getLogger().setLevel(spec.log_level)
    logging.getLogger("redis").setLevel(spec.redis_log_level)
    for name in spec.modules:
        importlib.import_module(name)
    app: Celeriac = getattr(sys.modules[spec.app_module], spec.app_attribute)
    missing = sorted(set(spec.tasks) - set(app.tasks))
    if missing:
        raise LookupError(f"tasks registered at run time, not at import: {', '.join(missing[:5])}")
    app.conf = spec.conf  # the worker's settings, command-line overrides included
    return app
