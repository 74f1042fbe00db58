"""The loop each child of the ``processes`` pool runs (forked by ``forkserver.py``).

Receive ``(seq, request, soft limit)`` from the child's inbox (one record per request; the worker may
send one ahead while the child is busy, see ``ipc.py``), run the task (sync: directly, with the soft limit as
``SIGALRM``; async: ``asyncio.run``, with the soft limit by cancellation), answer with the value or
the exception (pickled; with its formatted traceback) and the child's resident size. The child never
talks to Redis on the worker's behalf: the worker keeps all the I/O and decides outcomes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from ... import signals
from ...context import Request, _current
from ...exceptions import SoftTimeLimitExceeded
from ..recycling import resident_kib
from .forkserver import detach_signals, die_with_parent
from .ipc import RECORD_MAX, Channel, read_record

if TYPE_CHECKING:
    from ...app import Celeriac

# Imports are kept to what a child needs: the lean fork server (``lean.py``) imports this module in a
# fresh interpreter, and every byte imported here is resident in each child. No asyncio (imported
# when an async task runs), no executor, no multiprocessing (``ipc.Channel`` frames messages itself).


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
    detach_signals()
    die_with_parent()
    conn = Channel(sock)
    alarm = _SoftAlarm()
    code = 0
    try:
        # the inbox (ipc.py) comes first on the stream, before any request: nothing is buffered yet
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 1, 1)
        if not fds:
            raise EOFError("the worker closed the socket before sending the inbox")
        inbox = socket.socket(fileno=fds[0])
        signals.worker_process_init.send(sender=None)  # where users open their DB connections
        conn.send_bytes(pickle.dumps(("ready", os.getpid())))
        while True:
            try:
                data = inbox.recv(RECORD_MAX)
                if not data:
                    break  # the worker is gone (its end of the inbox closed)
                _seq, request_bytes = read_record(data)
                if not request_bytes:  # too large for a record: it follows on the stream
                    request_bytes = conn.recv_bytes()
            except (EOFError, OSError):
                break  # the worker is gone
            message = pickle.loads(request_bytes)
            if message[0] == "stop":
                break
            _, seq, fields, soft_s, want_rss = message
            conn.send_bytes(_run_one(app, alarm, seq, Request(*fields), soft_s, want_rss))
    except BaseException:  # a bug here must not leave a half-dead child: report, exit, be replaced
        traceback.print_exc()
        code = 70
    finally:
        with contextlib.suppress(Exception):
            signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=code)
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)  # never run the worker's atexit handlers in a child


def _run_one(
    app: Celeriac, alarm: _SoftAlarm, seq: int, request: Request, soft_s: float | None, want_rss: bool = True
) -> bytes:
    """Run one task; the answer, pickled: ``("done", seq, ok, value or exception, rss KiB, seconds)``.

    The resident size only when ``want_rss`` (a memory recycling limit: reading it costs three system
    calls), else None."""
    started = time.perf_counter()
    label = f"{request.task}[{request.id}]"
    token = _current.set(request)
    # traced (celeriac.tracing): the worker's run span is the current context while the task runs here
    traced = app.tracing.attached(request.traceparent) if app.tracing and request.traceparent else None
    if traced is not None:
        traced.__enter__()
    try:
        task = app.tasks[request.task]
        call = task.bound(request.args, request.kwargs)
        if task.is_async:
            import asyncio  # only children that run async tasks pay for it

            from ..limits import TimeLimits, run_coroutine

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
        if traced is not None:
            traced.__exit__(None, None, None)
    runtime_s = time.perf_counter() - started
    rss_kib = resident_kib() if want_rss else None
    try:
        return pickle.dumps(("done", seq, ok, payload, rss_kib, runtime_s), pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an unpicklable return value
        problem = TypeError(f"the result of {label} cannot be sent back from the child process: {exc}")
        return pickle.dumps(("done", seq, False, pack_exception(problem), rss_kib, runtime_s))


def pack_exception(exc: BaseException) -> tuple[bytes | None, str, str, str]:
    """An exception as ``(pickle or None, type path, message, formatted traceback)``."""
    cls = type(exc)
    formatted = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    try:
        pickled: bytes | None = pickle.dumps(exc)
    except Exception:
        pickled = None
    return pickled, f"{cls.__module__}.{cls.__qualname__}", str(exc), formatted
