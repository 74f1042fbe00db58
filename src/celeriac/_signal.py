"""A minimal Celery-style signal: ``@app.on_after_configure.connect`` and ``send(sender=...)``."""

from __future__ import annotations

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
