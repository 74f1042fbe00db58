"""Flow control across every worker: rate limits, concurrency limits, queue pause.

* Rate limits use Celery's syntax (``@app.task(rate_limit="100/s")``) and hold **globally** by default
  (all workers together; GCRA in Lua). A limited task never waits in a worker slot: it is handed back
  to the queue's delayed set with a reserved start time, FIFO among the waiting
  (``_redis/lua/rate_acquire.lua``). ``rate_limit_scope="worker"`` gives Celery's per-worker meaning.
* Concurrency limits (``@app.task(max_concurrency=5)``) hold across workers; a task over the limit is
  parked in Redis until a slot frees; a slot held by a dead worker frees when its lease expires.
* Queue pause: a paused queue accepts sends; workers take nothing from it.

:class:`FlowAdmin` is the operator side (``app.control.rate_limit``, ``celeriac queue pause``).
"""

from __future__ import annotations

from .admin import FlowAdmin
from .rates import Rate, parse_rate

__all__ = ["FlowAdmin", "Rate", "parse_rate"]
