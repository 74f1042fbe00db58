"""Child processes of the ``processes`` pool: a fork server, and the loop each child runs.

Why a fork server of our own, forked from the worker before its event loop starts:

* ``fork`` straight from the worker would copy a process that has an event loop, Redis connections
  and threads (asyncio's executor, ...). A lock held by another thread at that instant stays locked
  forever in the child, and Python 3.12+ warns about exactly that. The fork server is forked while
  the worker is still single-threaded (``Pool.prepare``, before ``asyncio.run``), never runs a
  thread, and forks every child (and every replacement) from that clean state.
* ``spawn`` (or multiprocessing's ``forkserver``) starts fresh interpreters that import the app
  again: slower to replace a child, no memory shared between children, a separate resource-tracker
  process, and the app must be importable by name. Our fork server already holds the imported app
  (whatever ``-A``/``-I`` imported), so a child is ready in milliseconds and shares the pages of the
  imported code with its siblings until they write to them.

Protocol: the worker sends the fork server one end of a new socket pair (``SCM_RIGHTS``); the server
forks, the child keeps that socket, and the server answers with the child's pid. The server reaps
its children and reports each exit status on a second socket (for the worker's log). Children and
the server ignore SIGINT/SIGTERM: the worker decides when they stop (a Ctrl-C reaches the whole
process group, and a warm shutdown must let running tasks finish). On Linux each dies with its
parent (``PR_SET_PDEATHSIG``): when the worker is killed, nothing keeps running a task that another
worker will now run again.

The child loop: receive ``(seq, request, soft limit)``, run the task (sync: directly, with the soft
limit as ``SIGALRM``; async: ``asyncio.run``, with the soft limit by cancellation), answer with the
value or the exception (pickled; with its formatted traceback) and the child's resident size. The
child never talks to Redis on the worker's behalf: the worker keeps all the I/O and decides outcomes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from ..context import Request, _current
from ..exceptions import SoftTimeLimitExceeded
from .recycling import resident_kib

if TYPE_CHECKING:
    from ..app import Celeriac
    from .lean import LeanSpec

# Imports are kept to what a child needs: the lean fork server (``lean.py``) imports this module in a
# fresh interpreter, and every byte imported here is resident in each child. No asyncio (imported
# when an async task runs), no executor, no multiprocessing (``Channel`` frames messages itself).

_PID = struct.Struct("!q")
_EXIT = struct.Struct("!qq")  # pid, raw wait status
_SPAWN_TIMEOUT_S = 10.0


class ForkServer:
    """A process that forks children on request (see the module docstring).

    Args:
        child_main: what a new child runs, given its socket; must never return.
    """

    def __init__(self, child_main: Callable[[socket.socket], NoReturn], lean: LeanSpec | None = None) -> None:
        self._child_main = child_main
        self._lean = lean
        self._process: Any = None  # the lean server's subprocess.Popen
        self.pid = 0
        self._ctrl: socket.socket | None = None
        self.status: socket.socket | None = None  # exit statuses (read by the worker's loop)

    def start(self) -> ForkServer:
        """Start a lean server (a fresh interpreter, ``lean.py``) if given a spec, else fork one."""
        if self._lean is not None:
            from .lean import start_server

            try:
                self._process, ctrl, self.status = start_server(self._lean)
            except OSError as exc:
                # tasks registered at run time are a normal case (the fallback only costs memory)
                level = logging.INFO if "LookupError" in str(exc) else logging.WARNING
                logging.getLogger("celeriac.worker").log(
                    level, "%s; forking the process pool's server from the worker instead", exc
                )
            else:
                ctrl.settimeout(_SPAWN_TIMEOUT_S)
                self.pid, self._ctrl = self._process.pid, ctrl
                return self
        ctrl, ctrl_remote = socket.socketpair()
        status, status_remote = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the fork server
            try:
                ctrl.close()
                status.close()
                _serve(ctrl_remote, status_remote, self._child_main)
            finally:
                os._exit(0)
        ctrl_remote.close()
        status_remote.close()
        ctrl.settimeout(_SPAWN_TIMEOUT_S)
        self.pid, self._ctrl, self.status = pid, ctrl, status
        return self

    @property
    def alive(self) -> bool:
        return self._ctrl is not None

    def spawn(self) -> tuple[int, socket.socket]:
        """Fork a child; return its pid and the worker's end of its socket.

        Raises:
            OSError: the fork server is gone or did not answer.
        """
        if self._ctrl is None:
            raise OSError("the fork server is stopped")
        mine, theirs = socket.socketpair()
        try:
            socket.send_fds(self._ctrl, [b"f"], [theirs.fileno()])
            answer = _recv_exactly(self._ctrl, _PID.size)
        except OSError:
            mine.close()
            self.close()
            raise
        finally:
            theirs.close()  # the child has its own copy now
        return _PID.unpack(answer)[0], mine

    def close(self) -> None:
        """Stop the server (it exits when its socket closes) and reap it."""
        for sock in (self._ctrl, self.status):
            if sock is not None:
                sock.close()
        self._ctrl = self.status = None
        if self._process is not None:
            self._process.wait()
            self._process = None
        elif self.pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        self.pid = 0


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the fork server closed its socket")
        data += chunk
    return data


class Channel:
    """Length-prefixed messages over a stream socket, between the worker and one child.

    What ``multiprocessing.connection.Connection`` does, without importing ``multiprocessing``
    (4.5 MiB resident in every child). Raises ``EOFError`` when the other end closed the socket.
    """

    _HEADER = struct.Struct("!Q")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def send_bytes(self, data: bytes) -> None:
        self._sock.sendall(self._HEADER.pack(len(data)))
        self._sock.sendall(data)

    def recv_bytes(self) -> bytes:
        try:
            (size,) = self._HEADER.unpack(_recv_exactly(self._sock, self._HEADER.size))
            return _recv_exactly(self._sock, size) if size else b""
        except ConnectionResetError as exc:
            raise EOFError(str(exc)) from None

    def poll(self) -> bool:
        """True when a message (or EOF) can be read without blocking."""
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self._sock.close()


def _serve(
    ctrl: socket.socket, status: socket.socket, child_main: Callable[[socket.socket], NoReturn]
) -> None:
    """The fork server's loop: fork on request, report exits; end when the worker's socket closes."""
    _detach_signals()
    _die_with_parent()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)  # SIGCHLD wakes the select below
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        readable, _, _ = select.select([ctrl.fileno(), wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 512)
            _reap(status)
        if ctrl.fileno() not in readable:
            continue
        try:
            _msg, fds, _flags, _addr = socket.recv_fds(ctrl, 1, 1)
        except OSError:
            return
        if not fds:  # the worker closed its socket: stop (children die with us)
            return
        pid = os.fork()
        if pid == 0:  # a child
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (wake_r, wake_w):
                os.close(fd)
            ctrl.close()
            status.close()
            try:
                child_main(socket.socket(fileno=fds[0]))
            finally:
                os._exit(70)  # child_main never returns; if it raised, never fall back into this loop
        os.close(fds[0])
        try:
            ctrl.sendall(_PID.pack(pid))
        except OSError:
            return


def _reap(status: socket.socket) -> None:
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with contextlib.suppress(OSError):
            status.sendall(_EXIT.pack(pid, wait_status))


def read_exits(status: socket.socket) -> list[tuple[int, str]]:
    """Exit reports the fork server sent: ``(pid, "exit code 1" / "killed by SIGKILL")``."""
    data = status.recv(_EXIT.size * 64)
    if not data:
        raise EOFError("the fork server is gone")
    while len(data) % _EXIT.size:
        data += _recv_exactly(status, _EXIT.size - len(data) % _EXIT.size)
    out = []
    for offset in range(0, len(data), _EXIT.size):
        pid, wait_status = _EXIT.unpack_from(data, offset)
        out.append((pid, describe_wait_status(wait_status)))
    return out


def describe_wait_status(wait_status: int) -> str:
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exit code {os.waitstatus_to_exitcode(wait_status)}"


def _detach_signals() -> None:
    # The worker decides when children stop: a Ctrl-C reaches the whole process group, and systemd's
    # SIGTERM reaches the whole cgroup, yet a warm shutdown must let running tasks finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so no orphan runs a task another worker now runs."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # imported here: only Linux needs it

    parent = os.getppid()
    try:
        # the process's own symbols include libc's; ctypes.util.find_library would run ldconfig
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl: nobody would tell us
        os._exit(1)


# ---- the child ------------------------------------------------------------------------------------
class _SoftAlarm:
    """The soft limit of a sync task in a child: SIGALRM, whose handler raises in the task's code.

    A signal handler runs between bytecodes of the main thread, and raising there also interrupts
    ``time.sleep`` and other blocking calls that Python retries after a signal (PEP 475). Armed
    only while the task runs, so a late alarm cannot hit the child's own loop.
    """

    def __init__(self) -> None:
        self.armed = False
        self.label = ""
        self.soft_s = 0.0
        signal.signal(signal.SIGALRM, self._fire)

    def _fire(self, _signum: int, _frame: Any) -> None:
        if self.armed:
            self.armed = False
            raise SoftTimeLimitExceeded(f"{self.label}: soft time limit ({self.soft_s:g}s) exceeded")

    @contextlib.contextmanager
    def running(self, soft_s: float | None, label: str) -> Iterator[None]:
        if soft_s is None:
            yield
            return
        self.label, self.soft_s, self.armed = label, soft_s, True
        signal.setitimer(signal.ITIMER_REAL, soft_s)
        try:
            yield
        finally:
            self.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)


def child_main(app: Celeriac, sock: socket.socket) -> NoReturn:
    """Run tasks sent by the worker until told to stop or the worker goes away. Never returns."""
    _detach_signals()
    _die_with_parent()
    conn = Channel(sock)
    alarm = _SoftAlarm()
    code = 0
    try:
        conn.send_bytes(pickle.dumps(("ready", os.getpid())))
        while True:
            try:
                request_bytes = conn.recv_bytes()
            except (EOFError, OSError):
                break  # the worker is gone
            message = pickle.loads(request_bytes)
            if message[0] == "stop":
                break
            _, seq, request, soft_s = message
            conn.send_bytes(_run_one(app, alarm, seq, request, soft_s))
    except BaseException:  # a bug here must not leave a half-dead child: report, exit, be replaced
        traceback.print_exc()
        code = 70
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)  # never run the worker's atexit handlers in a child


def _run_one(app: Celeriac, alarm: _SoftAlarm, seq: int, request: Request, soft_s: float | None) -> bytes:
    """Run one task; the answer, pickled: ``("done", seq, ok, value or exception, rss KiB, seconds)``."""
    started = time.perf_counter()
    label = f"{request.task}[{request.id}]"
    token = _current.set(request)
    try:
        task = app.tasks[request.task]
        call = task.bound(request.args, request.kwargs)
        if task.is_async:
            import asyncio  # only children that run async tasks pay for it

            from .limits import TimeLimits, run_coroutine

            # a loop per task: children run one task at a time, and a fresh loop leaves nothing behind
            value = asyncio.run(run_coroutine(call(), TimeLimits(soft_s=soft_s), label))
        else:
            with alarm.running(soft_s, label):
                value = call()
        ok, payload = True, value
    except BaseException as exc:  # whatever the task raised goes back to the worker, which decides
        ok, payload = False, pack_exception(exc)
    finally:
        _current.reset(token)
    runtime_s = time.perf_counter() - started
    try:
        return pickle.dumps(("done", seq, ok, payload, resident_kib(), runtime_s))
    except Exception as exc:  # an unpicklable return value
        problem = TypeError(f"the result of {label} cannot be sent back from the child process: {exc}")
        return pickle.dumps(("done", seq, False, pack_exception(problem), resident_kib(), runtime_s))


def pack_exception(exc: BaseException) -> tuple[bytes | None, str, str, str]:
    """An exception as ``(pickle or None, type path, message, formatted traceback)``."""
    cls = type(exc)
    formatted = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    try:
        pickled: bytes | None = pickle.dumps(exc)
    except Exception:
        pickled = None
    return pickled, f"{cls.__module__}.{cls.__qualname__}", str(exc), formatted
