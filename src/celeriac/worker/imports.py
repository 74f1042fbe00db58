"""Lean workers: import only the task modules this worker's queues need.

A worker imports the app (``-A``), then the modules named with ``-I/--include`` and those that
``worker_queue_modules`` maps to the queues it consumes. Nothing else: a worker for ``-Q scrape``
need not pay (in memory and start-up time) for the report generator's numpy. Keep the app module
itself free of task-module imports to benefit.

A message for a task this worker has not imported is dead-lettered with a reason that says so (not
lost, not retried forever): replay it with ``celeriac dlq replay`` once a worker that has the task
consumes the queue.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping, Sequence

from ..exceptions import ConfigurationError


def task_modules(
    queue_modules: Mapping[str, Sequence[str]], queues: Sequence[str], include: Sequence[str]
) -> list[str]:
    """The modules to import, in order, each once: ``include`` first, then per queue."""
    names = [*include, *(m for q in queues for m in queue_modules.get(q, ()))]
    return list(dict.fromkeys(names))


def import_task_modules(names: Sequence[str]) -> None:
    """Import ``names`` (their ``@app.task`` decorators register the tasks).

    Raises:
        ConfigurationError: a module does not exist. An error raised by the module's own code while
            it imports propagates as is (with its traceback: it is a bug in that module).
    """
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                raise ConfigurationError(
                    "include", f"cannot import task module {name!r}: no module named {exc.name!r}"
                ) from None
            raise


def unknown_task_hint(name: str | None, known: Collection[str], modules: Sequence[str]) -> str:
    """The end of a dead-letter reason for a task this worker does not have: what is true (this
    worker has no task by that name), the registered names nearest to it (a misspelling is the usual
    cause), and how to give the worker the module that defines it."""
    import difflib  # here: only a worker that meets an unknown task pays for it (memory)

    close = difflib.get_close_matches(name or "", list(known), n=3, cutoff=0.6)
    nearest = f"did you mean {' or '.join(repr(n) for n in close)}?" if close else "none is close to it"
    imported = f"the app module and {', '.join(modules)}" if modules else "only the app module"
    return (
        f"; this worker has no task by that name ({len(known)} registered; {nearest}). A task defined "
        f"in another module needs that module imported: -I/--include or worker_queue_modules (this "
        f"worker imported {imported}); then `celeriac dlq replay`"
    )
