"""Task control from anywhere: ``app.control.revoke(...)``.

A revoke is recorded in Redis, not broadcast: ``revoke.lua`` appends the ids to the revocation stream
(trimmed to ``revoke_expires_s`` and ``revoked_max``), and every worker keeps a local mirror of that
stream in sync incrementally (``broker/revoked.py``): once per fetch batch, in the same round trip and
after the fetch, and in its control loop. So:

* a task revoked while queued or delayed never starts, whether the revoke came before any worker saw
  it or reached workers started later; its result is REVOKED (``get()`` raises
  :class:`~celeriac.exceptions.TaskRevokedError`), stored at once by the revoke itself and again by the
  worker that drops it;
* checking a task costs a worker one set lookup;
* the one race: a revoke that reaches Redis after the worker's fetch took the message (and read the
  stream right after) finds the task started: it then runs to the end unless ``terminate=True``, as a
  revoke of a running task does in Celery.

``terminate=True`` also stops the task where it runs, as far as its pool allows (docs/task-control.md,
"Revoke").
"""

from __future__ import annotations

import signal as _signal
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .exceptions import TaskRevokedError
from .record import ResultRecord, encode_record
from .states import TaskState

if TYPE_CHECKING:
    from .app import Celeriac
    from .inspect import Inspect
    from .message import Message

__all__ = ["Control", "member_failed", "signal_name"]


def signal_name(signal: str | int) -> str:
    """The canonical name (``SIGTERM``) of a signal given as a name (``TERM``, ``SIGTERM``) or number.

    Raises:
        ValueError: no such signal.
    """
    try:
        if isinstance(signal, int) and not isinstance(signal, bool):
            return _signal.Signals(signal).name
        if isinstance(signal, str):
            name = signal.strip().upper()
            name = name if name.startswith("SIG") else f"SIG{name}"
            return _signal.Signals[name].name
    except (KeyError, ValueError):
        pass
    raise ValueError(
        f"unknown signal {signal!r} (give a name such as 'SIGTERM', 'TERM' or 'SIGKILL', or a number)"
    )


class _FlowControl:
    """``app.control.rate_limit`` and queue pause (celeriac.flow), next to revoke on :class:`Control`."""

    app: Celeriac

    def rate_limit(self, task_name: str, rate_limit: str | float | None, **celery_options: object) -> None:
        """Set a task's rate limit on every worker: ``"20/s"``, ``"10/m"``; ``0``/``None`` lifts it;
        ``"default"`` returns to the decorator's (:meth:`celeriac.flow.FlowAdmin.rate_limit`)."""
        from .flow import FlowAdmin

        FlowAdmin(self.app).rate_limit(task_name, rate_limit, **celery_options)

    def rate_limits(self) -> dict[str, str]:
        """Rates set at run time, by task name."""
        from .flow import FlowAdmin

        return FlowAdmin(self.app).rate_limits()

    def pause_queue(self, queue: str) -> bool:
        """Pause a queue on every worker (sends are still accepted). False when paused already."""
        from .flow import FlowAdmin

        return FlowAdmin(self.app).pause_queue(queue)

    def resume_queue(self, queue: str) -> bool:
        """Resume a paused queue. False when it was not paused."""
        from .flow import FlowAdmin

        return FlowAdmin(self.app).resume_queue(queue)

    def paused_queues(self) -> set[str]:
        """The paused queues."""
        from .flow import FlowAdmin

        return FlowAdmin(self.app).paused_queues()


class _WorkerControl:
    """``app.control.inspect()``, ``shutdown`` and ``ping``: live workers (``celeriac inspect``)."""

    app: Celeriac

    def inspect(
        self, destination: str | Iterable[str] | None = None, timeout: float = 1.0, **options: Any
    ) -> Inspect:
        """What workers run, what waits delayed, per-worker stats: :class:`celeriac.inspect.Inspect`."""
        from .inspect import Inspect

        return Inspect(self.app, destination, timeout, **options)

    def shutdown(self, destination: str | Iterable[str] | None = None, **_celery: Any) -> list[str]:
        """Warm shutdown of every live worker, or of ``destination`` (``worker@host`` names): each
        stops fetching, lets its running tasks finish (within ``worker_shutdown_grace_s``), records
        their outcomes and exits 0, as after SIGTERM. Returns the live workers it was sent to.

        Raises:
            ValueError: a destination that names no live worker (nothing is sent).
            ConfigurationError: the broker is not Redis.
            BrokerError: Redis is down.
        """
        from .broker.redis import RedisBroker
        from .exceptions import ConfigurationError
        from .inspect import Inspect

        broker = self.app.broker
        if not isinstance(broker, RedisBroker):
            raise ConfigurationError("broker_url", "control shutdown goes through Redis: use a Redis broker")
        inspect = Inspect(self.app, destination, timeout=0)
        live = inspect.workers()
        unknown = inspect.unknown_destinations(live)
        if unknown:
            names = ", ".join(sorted(w.worker_id for w in broker.workers())) or "none"
            raise ValueError(f"no live worker named {', '.join(unknown)} (live workers: {names})")
        broker.send_control("shutdown", inspect.destination)
        return [w.worker_id for w in live]

    def ping(
        self, destination: str | Iterable[str] | None = None, timeout: float = 1.0, **_celery: Any
    ) -> list[dict[str, dict[str, str]]]:
        """Celery's shape: ``[{worker: {"ok": "pong"}}, ...]`` for the workers that answered within
        ``timeout`` seconds."""
        from .inspect import Inspect

        return [{name: reply} for name, reply in Inspect(self.app, destination, timeout).ping().items()]


class Control(_FlowControl, _WorkerControl):
    """``app.control``: revoke tasks, inspect and shut down workers (Celery's names and arguments)."""

    def __init__(self, app: Celeriac) -> None:
        self.app = app

    def revoke(
        self,
        task_id: str | Iterable[str],
        terminate: bool = False,
        signal: str | int = "SIGTERM",
        **_unused: Any,
    ) -> None:
        """Revoke one task id or many: a task that has not started never runs; with ``terminate``, a
        running one is stopped too (asyncio: cancelled; processes: ``signal`` sent to its child only;
        gevent: its greenlet killed; threads: see docs/task-control.md).

        Revocations last ``revoke_expires_s`` (default a day): a task delayed for longer than that
        runs. The REVOKED state is stored at once for tasks without a final result.

        Raises:
            ValueError: an unknown signal, or an empty id.
            BrokerError: Redis is down.
        """
        ids = [task_id] if isinstance(task_id, str) else list(dict.fromkeys(task_id))
        if any(not isinstance(i, str) or not i for i in ids):
            raise ValueError("task ids must be non-empty strings")
        if not ids:
            return
        name = signal_name(signal)
        conf = self.app.conf
        self.app.broker.revoke(
            ids, terminate=terminate, signal=name, ttl_s=conf.revoke_expires_s, max_entries=conf.revoked_max
        )
        backend = self.app.backend
        if backend is not None:
            payload = revoked_payload(ids[0])  # a record carries no id: one encoding serves every id
            backend.mark_revoked([(i, payload) for i in ids], conf.result_expires_s)


def is_workflow_member(message: Message) -> bool:
    """Whether a message belongs to a workflow (chain, group, chord): only those need
    :func:`member_failed`. A dict lookup: plain tasks pay nothing more."""
    return bool(message.extra) and isinstance(message.extra.get("w"), dict)


def member_failed(
    app: Celeriac, message: Message, exc: BaseException, queue: str = "", state: TaskState = TaskState.REVOKED
) -> None:
    """Tell the workflow a message belongs to that this member will never succeed (revoked before it
    ran, terminated, expired, dead-lettered): the revoke path calls it, so that a chord fails instead
    of waiting forever. A message outside any workflow is left alone. Synchronous (Redis I/O): a
    worker calls it off its loop.

    The chord side is the workflow module's (``celeriac.workflow.member_failed``); without it this
    does nothing.
    """
    if not is_workflow_member(message):
        return
    try:
        from . import workflow  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return
    hook: Any = getattr(workflow, "member_failed", None)
    if hook is not None:
        exc_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        hook(app, message, queue, state, exc_type, str(exc))


def revoked_payload(task_id: str, why: str = "revoked by app.control.revoke") -> bytes:
    """The encoded REVOKED result record of ``task_id``."""
    exc_type = f"{TaskRevokedError.__module__}.{TaskRevokedError.__qualname__}"
    record = ResultRecord(task_id, TaskState.REVOKED, None, exc_type, why, None, int(time.time() * 1000))
    return encode_record(record)
