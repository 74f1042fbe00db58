"""Time limits: how each kind of code is interrupted (the ``TimeLimits`` value, and which limits
apply to a run, are :mod:`celeriac.execution`'s).

A *soft* limit raises :class:`~celeriac.exceptions.SoftTimeLimitExceeded` inside the running task, so
that it can clean up (or ignore it). A *hard* limit ends the task: it fails with
:class:`~celeriac.exceptions.TimeLimitExceeded` and follows its retry policy.

How each is enforced depends on where the code runs, and the honest answer differs:

* coroutines (any pool): by cancellation. The coroutine is driven through :class:`_Limited`, which
  turns the worker's own cancellation into ``SoftTimeLimitExceeded`` at the coroutine's current
  ``await``; at the hard limit a real ``CancelledError`` is thrown in (``finally`` blocks run) and the
  run fails with ``TimeLimitExceeded``. A coroutine that swallows cancellations keeps its slot.
* sync functions in threads: the soft limit uses ``PyThreadState_SetAsyncExc``, which raises at the
  thread's next Python bytecode. It cannot interrupt C code or a blocking system call
  (``time.sleep(60)`` finishes first). A hard limit cannot be enforced at all: Python cannot stop a
  thread. The run is failed and its delivery settled at the hard limit; the thread is abandoned and
  runs on until the function returns (see ``pools.ThreadBackedPool``).
* sync functions in child processes (``-P processes``): soft by ``SIGALRM`` in the child (the
  handler raises, which also interrupts ``time.sleep`` and most blocking calls); hard by killing the
  child, which is then replaced (see ``process/pool.py``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ..exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from ..execution import NO_LIMITS as NO_LIMITS
from ..execution import TimeLimits as TimeLimits

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..task import Task


def limit_caveats(app: Celeriac, defaults: TimeLimits, pool: str) -> str | None:
    """The start-up warning of a pool that cannot interrupt some sync code under a time limit, or None.

    Said at start rather than discovered in production: threads cannot be stopped (``asyncio``,
    ``threads``), and greenlets are interrupted only where they yield (``gevent``). ``processes``
    enforces both limits on any code (SIGALRM, SIGKILL).
    """
    if pool in ("asyncio", "threads"):
        limited = _sync_tasks_with(app, lambda t: (t.time_limit or defaults.hard_s) is not None)
        if not limited and defaults.hard_s is None:
            return None
        return (
            f"pool {pool} cannot enforce a hard time limit on sync tasks "
            f"({', '.join(limited) if limited else 'the worker default --time-limit'}): when it passes the "
            "task fails with TimeLimitExceeded and its delivery is settled, but its thread cannot be "
            "stopped and runs on, abandoned. A soft_time_limit interrupts Python code; use -P processes "
            "to kill it."
        )
    if pool == "gevent":
        limited = _sync_tasks_with(
            app,
            lambda t: (t.time_limit or t.soft_time_limit or defaults.hard_s or defaults.soft_s) is not None,
        )
        if not limited and not defaults:
            return None
        return (
            f"pool gevent interrupts sync tasks under a time limit "
            f"({', '.join(limited) if limited else 'the worker defaults'}) only where they yield to gevent "
            "(sleep, socket I/O): code that computes without yielding cannot be interrupted, and holds every "
            "other task and the worker's loop meanwhile; a run that ends past its hard limit fails with "
            "TimeLimitExceeded. Use -P processes for CPU-bound tasks."
        )
    return None


def _sync_tasks_with(app: Celeriac, limited: Callable[[Task[Any, Any]], bool]) -> list[str]:
    return sorted(name for name, task in app.tasks.items() if not task.is_async and limited(task))


# ---- coroutines ------------------------------------------------------------------------------------
async def run_coroutine(coro: Coroutine[Any, Any, Any], limits: TimeLimits, label: str) -> Any:
    """Await ``coro`` in the current task under ``limits`` (see the module docstring)."""
    if not limits:
        return await coro
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    limited = _Limited(coro, task, label, limits)
    handles = [
        loop.call_later(seconds, limited.fire, kind)
        for kind, seconds in (("soft", limits.soft_s), ("hard", limits.hard_s))
        if seconds is not None
    ]
    try:
        return await limited
    finally:
        for handle in handles:
            handle.cancel()


class _Limited(Generator[Any, Any, Any]):
    """Drives a coroutine like ``await`` does, translating the cancellations this class requested.

    Why a proxy and not ``asyncio.timeout``: a timeout context turns the cancellation into an error
    *outside* the coroutine, but a soft limit must raise *inside* it, at the ``await`` where it waits,
    so that the task's own ``except SoftTimeLimitExceeded`` can run. ``await`` delegates ``throw`` to
    this object, which throws the limit error into the coroutine instead of the ``CancelledError``.
    """

    def __init__(
        self, coro: Coroutine[Any, Any, Any], task: asyncio.Task[Any], label: str, limits: TimeLimits
    ) -> None:
        self._coro = coro
        self._task = task
        self._label = label
        self._limits = limits
        self._requested: str | None = None  # a cancellation we asked for and have not yet translated
        self._requests = 0  # how many cancellations we asked for that have not yet been translated
        self._hard = False

    def fire(self, kind: str) -> None:
        if self._hard or self._task.done():
            return
        # Both limits may fire before the task runs again (a loop that was blocked: a gevent hub kept
        # busy by CPU-bound code). Then the hard one wins, and both requests are ours, not a shutdown's.
        self._requested = "hard" if self._requested == "hard" else kind
        self._requests += 1
        self._task.cancel(f"celeriac {kind} time limit")

    def __await__(self) -> Generator[Any, Any, Any]:
        return self

    def send(self, value: Any) -> Any:
        try:
            return self._coro.send(value)
        except StopIteration:
            if self._hard:  # it swallowed the cancellation and returned: the limit still passed
                raise self._hard_error() from None
            raise
        except asyncio.CancelledError:
            if self._hard:
                raise self._hard_error() from None
            raise

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = val if isinstance(val, BaseException) else typ() if isinstance(typ, type) else typ
        if isinstance(exc, asyncio.CancelledError) and self._requested and not self._cancelled_by_others():
            kind, self._requested = self._requested, None
            for _ in range(self._requests):
                _uncancel(self._task)
            self._requests = 0
            if kind == "soft":
                exc = SoftTimeLimitExceeded(
                    f"{self._label}: soft time limit ({self._limits.soft_s:g}s) exceeded"
                )
            else:
                self._hard = True  # a real CancelledError goes in, so that finally blocks run
        try:
            return self._coro.throw(exc)
        except StopIteration:
            if self._hard:
                raise self._hard_error() from None
            raise
        except asyncio.CancelledError:
            if self._hard:
                raise self._hard_error() from None
            raise

    def close(self) -> None:
        self._coro.close()

    def _cancelled_by_others(self) -> bool:
        # Our cancel and someone else's (a cold shutdown) may arrive as one CancelledError; since 3.11
        # the task counts requests, and a shutdown must win. On 3.10 the two cannot be told apart.
        cancelling = getattr(self._task, "cancelling", None)
        return cancelling is not None and cancelling() > self._requests

    def _hard_error(self) -> TimeLimitExceeded:
        return TimeLimitExceeded(f"{self._label}: time limit ({self._limits.hard_s:g}s) exceeded")


def _uncancel(task: asyncio.Task[Any]) -> None:
    uncancel = getattr(task, "uncancel", None)  # 3.11+: keep asyncio.timeout() inside the task exact
    if uncancel is not None:
        uncancel()


# ---- threads ---------------------------------------------------------------------------------------
def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Ask CPython to raise ``exc_type`` in another thread at its next bytecode. True if it was set.

    Only CPython has ``PyThreadState_SetAsyncExc``; elsewhere this returns False (no soft limit).
    """
    set_async_exc = _set_async_exc()
    if set_async_exc is None:
        return False
    import ctypes

    return bool(set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)) == 1)


def clear_thread_exception(thread_id: int) -> None:
    """Withdraw an exception set by :func:`raise_in_thread` that the thread has not raised yet."""
    set_async_exc = _set_async_exc()
    if set_async_exc is not None:
        import ctypes

        set_async_exc(ctypes.c_ulong(thread_id), None)  # NULL: clear


def _set_async_exc() -> Any:
    if sys.implementation.name != "cpython":
        return None
    import ctypes  # imported on first use: a worker without soft limits in threads does without libffi

    return ctypes.pythonapi.PyThreadState_SetAsyncExc
