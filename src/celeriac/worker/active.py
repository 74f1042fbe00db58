"""The heartbeat's list of running tasks, for ``celeriac inspect active`` (Celery's field names).

Built at heartbeat time only (every ``worker_ttl_s / 3``, or when ``celeriac inspect`` asks for a fresh
one): the hot path pays one ``time.time()`` per task (the slot's start). At most
:data:`ACTIVE_MAX` tasks are listed, the longest-running first, with their arguments as a
``repr`` cut to :data:`REPR_MAX` characters; ``active_count`` says how many run in all.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import Celeriac
    from .inflight import Slot

#: running tasks listed per worker (the heartbeat stays small with thousands of greenlets)
ACTIVE_MAX = 100


def active_fields(app: Celeriac, worker_id: str, slots: list[Slot]) -> dict[str, str]:
    """Heartbeat fields ``active`` (JSON list of Celery-shaped task dicts) and ``active_count``."""
    if not slots:
        return {"active": "[]", "active_count": "0"}
    # imported here: celeriac.inspect is the client side's module (0.1 MiB), loaded in a worker only
    # once a heartbeat lists a running task
    from ..inspect import short_repr

    rows: list[dict[str, Any]] = []
    for slot in sorted(slots, key=lambda s: s.started_s)[:ACTIVE_MAX]:
        d = slot.delivery
        try:
            m = app.codec.decode(d.data)
        except Exception:  # an undecodable message never runs; skip rather than fail the heartbeat
            continue
        rows.append(
            {
                "id": m.id,
                "name": m.task,
                "args": short_repr(m.args),
                "kwargs": short_repr(m.kwargs),
                "type": m.task,
                "hostname": worker_id,
                "time_start": round(slot.started_s, 3),
                "acknowledged": not slot.owned,
                "delivery_info": {"routing_key": d.queue, "redelivered": d.deliveries > 1},
                "deliveries": d.deliveries,
            }
        )
    return {"active": json.dumps(rows, separators=(",", ":")), "active_count": str(len(slots))}


__all__ = ["ACTIVE_MAX", "active_fields"]
