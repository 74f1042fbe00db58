"""Signals with Celery's names and arguments (``from celeriac.signals import task_failure``).

Receivers are called with ``signal=`` and ``sender=`` plus the signal's named arguments, as in Celery;
a receiver that raises is logged and does not stop the others, nor the task. A signal with no
receiver costs one attribute check where it would be sent.

Where each is sent:

* ``before_task_publish`` / ``after_task_publish``: in the sending process, around the Redis call
  (``sender`` is the task name; ``headers`` holds ``id`` and ``task``; ``routing_key`` is the queue).
* ``task_prerun``, ``task_postrun``, ``task_success``, ``task_failure``, ``task_retry``: where the
  task runs (the process pool's child, a thread, the event loop, or the caller in eager mode).
* ``task_revoked`` (a task that expired before it started), ``task_rejected`` (an undecodable
  message), ``task_unknown`` (an unregistered task name): in the worker, as it reads the message.
* ``worker_init``, ``worker_ready``, ``worker_shutdown``: in the worker process (``sender`` is the
  worker); ``worker_process_init``: in each child of the process pool as it starts (open database
  connections there); ``setup_logging``: when ``celeriac worker`` would configure logging: with a
  receiver, it configures nothing and leaves logging to the receiver, as in Celery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = [
    "Signal",
    "after_task_publish",
    "before_task_publish",
    "setup_logging",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_success",
    "task_unknown",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
]

logger = logging.getLogger("celeriac.signals")

Receiver = Callable[..., Any]


class Signal:
    """A named hook receivers connect to: ``@sig.connect`` or ``sig.connect(fn, sender=...)``."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: (receiver, sender filter or None); empty means sending costs one check
        self.receivers: list[tuple[Receiver, Any]] = []

    def __repr__(self) -> str:
        return f"<Signal {self.name}: {len(self.receivers)} receiver(s)>"

    def connect(self, receiver: Receiver | None = None, *, sender: Any = None, **_: Any) -> Any:
        """Connect ``receiver`` (called only for ``sender`` when given: an object, or a task name).
        Usable as ``@sig.connect`` and ``@sig.connect(sender=...)``; returns the receiver."""

        def add(fn: Receiver) -> Receiver:
            if not any(r is fn and s is sender for r, s in self.receivers):
                self.receivers.append((fn, sender))
            _recount()
            return fn

        return add(receiver) if receiver is not None else add

    def disconnect(self, receiver: Receiver, sender: Any = None) -> bool:
        """Remove ``receiver``; True when it was connected."""
        before = len(self.receivers)
        self.receivers = [(r, s) for r, s in self.receivers if not (r is receiver and s is sender)]
        _recount()
        return len(self.receivers) != before

    def send(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver; returns ``(receiver, response or exception)`` pairs."""
        responses: list[tuple[Receiver, Any]] = []
        for receiver, wanted in list(self.receivers):
            if wanted is not None and not _matches(wanted, sender):
                continue
            try:
                responses.append((receiver, receiver(signal=self, sender=sender, **named)))
            except Exception as exc:
                logger.exception("signal %s: receiver %r raised", self.name, receiver)
                responses.append((receiver, exc))
        return responses


def _matches(wanted: Any, sender: Any) -> bool:
    if wanted is sender or wanted == sender:
        return True
    # Celery lets a receiver name a task by its name, or by the task object
    return bool(getattr(sender, "name", None) == wanted or getattr(wanted, "name", object()) == sender)


before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_failure = Signal("task_failure")
task_retry = Signal("task_retry")
task_revoked = Signal("task_revoked")
task_rejected = Signal("task_rejected")
task_unknown = Signal("task_unknown")
worker_init = Signal("worker_init")
worker_process_init = Signal("worker_process_init")
worker_process_shutdown = Signal("worker_process_shutdown")
worker_ready = Signal("worker_ready")
worker_shutdown = Signal("worker_shutdown")
setup_logging = Signal("setup_logging")

#: the signals sent where a task runs: when none has a receiver, a task's call is not wrapped
RUN_SIGNALS = (task_prerun, task_postrun, task_success, task_failure, task_retry)


class _Active:
    """Whether any run signal has a receiver: one attribute read on the hot path (``Task.bound``)."""

    run = False


ACTIVE = _Active()


def _recount() -> None:
    ACTIVE.run = any(s.receivers for s in RUN_SIGNALS)
