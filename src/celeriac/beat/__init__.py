"""Periodic tasks without a single point of failure (Celery beat, leaderless, on Redis).

Any number of schedulers may run at once (embedded in workers with ``celeriac worker -B``, or
``celeriac beat``): each slot of each entry is claimed and enqueued in one Lua script, so it fires
exactly once across all of them, and no leader or lock can be lost. See docs/periodic-and-limits.md.

* :class:`Beat`: list, add, remove, pause, resume and run entries now (the ``celeriac beat`` commands);
* :class:`Scheduler`: the scheduling loop (what ``-B`` and ``celeriac beat`` run).
"""

from __future__ import annotations

from .admin import Beat, EntryStatus
from .entries import Entry
from .scheduler import Scheduler

__all__ = ["Beat", "Entry", "EntryStatus", "Scheduler"]
