"""The process pool's fork server: a process that forks children on request and reports their exits.

Why a fork server of our own rather than forking straight from the worker:

* ``fork`` straight from the worker would copy a process that has an event loop, Redis connections
  and threads (asyncio's executor, ...). A lock held by another thread at that instant stays locked
  forever in the child, and Python 3.12+ warns about exactly that. The fork server never runs a
  thread and forks every child (and every replacement) from that clean state. It is either a fresh
  interpreter that imports only the app (``lean.py``), or, when the app cannot be imported again by
  name, forked from the worker while the worker is still single-threaded (``Pool.prepare``, before
  ``asyncio.run``). The pool decides which (``pool.py``); both give the same :class:`ForkServer`.
* ``spawn`` (or multiprocessing's ``forkserver``) starts fresh interpreters per child that import
  the app again: slower to replace a child, no memory shared between children, a separate
  resource-tracker process. Our fork server already holds the imported app, so a child is ready in
  milliseconds and shares the pages of the imported code with its siblings until they write to them.

Protocol: the worker sends the fork server one end of a new socket pair (``SCM_RIGHTS``); the server
forks, the child keeps that socket, and the server answers with the child's pid. The server reaps
its children and reports each exit status on a second socket (for the worker's log). Children and
the server ignore SIGINT/SIGTERM: the worker decides when they stop (a Ctrl-C reaches the whole
process group, and a warm shutdown must let running tasks finish). On Linux each dies with its
parent (``PR_SET_PDEATHSIG``): when the worker is killed, nothing keeps running a task that another
worker will now run again.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from .ipc import recv_exactly

_PID = struct.Struct("!q")
_EXIT = struct.Struct("!qq")  # pid, raw wait status
_SPAWN_TIMEOUT_S = 10.0


class ForkServer:
    """A running fork server, as the worker sees it (see the module docstring).

    Args:
        pid: the server's pid.
        ctrl: the socket to ask for forks on.
        status: the socket the server reports exits on (read by the worker's loop).
        process: the ``subprocess.Popen`` of a lean server (reaped through it), else None.
    """

    def __init__(self, pid: int, ctrl: socket.socket, status: socket.socket, process: Any = None) -> None:
        ctrl.settimeout(_SPAWN_TIMEOUT_S)
        self.pid = pid
        self._ctrl: socket.socket | None = ctrl
        self.status: socket.socket | None = status
        self._process = process

    @classmethod
    def fork(cls, child_main: Callable[[socket.socket], NoReturn]) -> ForkServer:
        """Fork a fork server from this (still single-threaded) process.

        Args:
            child_main: what a new child runs, given its socket; must never return.
        """
        ctrl, ctrl_remote = socket.socketpair()
        status, status_remote = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the fork server
            try:
                ctrl.close()
                status.close()
                serve(ctrl_remote, status_remote, child_main)
            finally:
                os._exit(0)
        ctrl_remote.close()
        status_remote.close()
        return cls(pid, ctrl, status)

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
            answer = recv_exactly(self._ctrl, _PID.size)
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


def serve(
    ctrl: socket.socket, status: socket.socket, child_main: Callable[[socket.socket], NoReturn]
) -> None:
    """The fork server's loop: fork on request, report exits; end when the worker's socket closes."""
    detach_signals()
    die_with_parent()
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
        data += recv_exactly(status, _EXIT.size - len(data) % _EXIT.size)
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


def detach_signals() -> None:
    """Ignore SIGINT/SIGTERM (the fork server and each child).

    The worker decides when children stop: a Ctrl-C reaches the whole process group, and systemd's
    SIGTERM reaches the whole cgroup, yet a warm shutdown must let running tasks finish.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def die_with_parent() -> None:
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
