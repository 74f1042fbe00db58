"""The worker's heartbeat field ``connections``: Redis connections held by this worker process.

Counted from the clients' own pools (no ``CLIENT LIST``, which managed Redis services may forbid):
the worker's broker: its command pool (shared by the flow gate, the monitor recorder and the
workflow store, and the source of the pub/sub connection), the blocking read, the revocation read, and
the sync client while a task sends. A results backend's own pool (result writes, when results are
stored) is not in it. ``celeriac status`` shows it per worker.
"""

from __future__ import annotations

from typing import Any


def redis_connections(*holders: Any) -> dict[str, str]:
    """``{"connections": "<n>"}`` summed over distinct holders that can count, or ``{}``."""
    seen: set[int] = set()
    total = 0
    counted = False
    for holder in holders:
        count = getattr(holder, "connections", None)
        if holder is None or id(holder) in seen or not callable(count):
            continue
        seen.add(id(holder))
        try:
            total += int(count())
        except Exception:  # a count is informative: it must never cost the worker its heartbeat
            continue
        counted = True
    return {"connections": str(total)} if counted else {}
