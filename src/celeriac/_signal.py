"""A minimal Celery-style signal: ``@app.on_after_configure.connect`` and ``send(sender=...)``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

Receiver = Callable[..., Any]


class Signal:
    """Receivers called in the order they connected, with ``sender`` and keyword arguments.

    ``connect`` works as a decorator, with or without arguments (Celery's ``weak=False`` is accepted
    and ignored: receivers are always held strongly, so a lambda is not silently dropped).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.receivers: list[Receiver] = []

    def __repr__(self) -> str:
        return f"<Signal {self.name}: {len(self.receivers)} receiver(s)>"

    def connect(self, receiver: Receiver | None = None, **_options: Any) -> Any:
        def register(fn: Receiver) -> Receiver:
            if fn not in self.receivers:
                self.receivers.append(fn)
            return fn

        return register(receiver) if receiver is not None else register

    def disconnect(self, receiver: Receiver) -> None:
        if receiver in self.receivers:
            self.receivers.remove(receiver)

    def send(self, sender: Any, **kwargs: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver; an exception propagates (a broken set-up should fail loudly)."""
        return [(fn, fn(sender=sender, signal=self, **kwargs)) for fn in list(self.receivers)]


class PeriodicSetup:
    """What the app adds for periodic tasks, Celery's way: the set-up signals and ``add_periodic_task``
    (a mixin of :class:`celeriac.Celeriac`, kept out of the app module)."""

    @functools.cached_property
    def on_after_configure(self) -> Signal:
        """``@app.on_after_configure.connect`` receivers run once, before a scheduler reads
        ``beat_schedule`` (call ``add_periodic_task`` there)."""
        return Signal("on_after_configure")

    @functools.cached_property
    def on_after_finalize(self) -> Signal:
        return Signal("on_after_finalize")

    def fire_configured(self) -> None:
        """Send ``on_after_configure`` then ``on_after_finalize`` once (schedulers call this before
        reading ``beat_schedule``)."""
        if vars(self).get("_configured"):
            return
        vars(self)["_configured"] = True
        self.on_after_configure.send(sender=self)
        self.on_after_finalize.send(sender=self)

    def add_periodic_task(self, schedule: Any, sig: Any, *args: Any, **options: Any) -> str:
        """Add an entry to ``conf.beat_schedule`` (Celery's call): run ``sig`` on ``schedule``; see
        :func:`celeriac.beat.entries.add_periodic_task`. Returns the entry name."""
        from .beat.entries import add_periodic_task

        return add_periodic_task(self, schedule, sig, *args, **options)  # type: ignore[arg-type]
