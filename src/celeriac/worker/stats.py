"""The counters of one worker run (heartbeat fields, the CLI's exit summary, ``drain()``'s result)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["WorkerStats"]


@dataclass
class WorkerStats:
    """Counters of one worker run."""

    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    fenced: int = 0
    reclaimed: int = 0
    lost: int = 0  # runs whose process died (handed back, or failed with WorkerLostError)
    revoked: int = 0  # dropped unstarted or terminated (app.control.revoke)
    started_at: float = field(default_factory=time.time)
