"""The worker: fetch, execute, record, recover.

Names load on first use, so that importing a submodule (``celeriac.worker.process.child`` in a child
of the process pool) does not import the worker's loop, asyncio and redis-py with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .executor import Executor, Outcome
    from .worker import Worker, WorkerStats

_LAZY = {"Executor": ".executor", "Outcome": ".executor", "Worker": ".worker", "WorkerStats": ".worker"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


__all__ = ["Executor", "Outcome", "Worker", "WorkerStats"]
