"""The Redis keys of the monitoring data (task outcomes, failures, rollups), in one place.

Every key is per queue and carries the queue's Redis Cluster hash tag (``{queue}``), the same slot as
the queue's own keys (:mod:`celeriac.broker.keys`): ``record.lua`` writes all of them for one queue in
one atomic call, in the slot the worker's settle script already writes. Readers touch any number of
queues with one pipeline (one round trip per cluster node).

=========================================  ===========  ==============================================
key                                        type         bound / expiry
=========================================  ===========  ==============================================
``<prefix>:{<q>}:m:log``                   stream       recent outcomes, one entry per recorded
                                                        batch (fields ``w`` worker, ``r`` records);
                                                        trimmed to ``monitor_max_entries`` outcomes
                                                        and ``monitor_retention_days``; key TTL
``<prefix>:{<q>}:m:ids``                   sorted set   task id -> score of its latest log entry
                                                        (see :func:`score_of`); same bounds as the log
``<prefix>:{<q>}:m:fail``                  stream       one entry per failure / dead letter (field
                                                        ``r``: the full record with traceback, args;
                                                        ``m``: the message, for a retry);
                                                        ``monitor_max_failures`` entries, retention
``<prefix>:{<q>}:m:fids``                  sorted set   task id -> score of its latest ``m:fail`` entry;
                                                        same bounds as ``m:fail``
``<prefix>:{<q>}:m:fgroups``               hash         ``name\\x00exception type`` -> count, and
                                                        ``...\\x00last`` -> latest ``m:fail`` entry id;
                                                        at most 2,000 groups (then ``(other)``); TTL
``<prefix>:{<q>}:m:total``                 hash         lifetime counters (Prometheus): see
                                                        :mod:`celeriac.monitor.rollup`; TTL refreshed
``<prefix>:{<q>}:m:rel``                   sorted set   workflow links, all scores 0, read by prefix
                                                        (``ZRANGEBYLEX``); a member is id, kind, index
                                                        and task id joined by NUL: kind ``c`` child
                                                        of parent id, ``g`` member of group id, ``h``
                                                        header member / ``b`` body of chord id;
                                                        written only for workflow tasks; same bounds
                                                        as ``m:ids`` (through ``m:relt``); key TTL
``<prefix>:{<q>}:m:relt``                  sorted set   the same members by the score of their log
                                                        entry: what trims ``m:rel`` (cap, retention)
``<prefix>:{<q>}:m:roll:<res>:<bucket>``   hash         per-minute (``m``, 48 h), per-hour (``h``,
                                                        retention + 1 day) and per-day (``d``,
                                                        retention) rollups; ``bucket`` = epoch
                                                        seconds / bucket length
=========================================  ===========  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass

#: rollup resolutions: name -> bucket length in seconds
RESOLUTIONS = {"m": 60, "h": 3600, "d": 86_400}
#: how long each resolution's buckets live, in seconds (``d`` and ``h`` follow the retention setting)
MINUTE_TTL_S = 48 * 3600


@dataclass(frozen=True)
class MonitorKeys:
    """The monitoring keys of one queue."""

    queue: str
    log: str
    ids: str
    fail: str
    fids: str
    fgroups: str
    total: str
    roll_prefix: str
    rel: str
    relt: str

    def roll(self, resolution: str, bucket: int) -> str:
        """The rollup hash of one bucket (``bucket`` = epoch seconds // bucket length)."""
        return f"{self.roll_prefix}{resolution}:{bucket}"


def monitor_keys(prefix: str, queue: str) -> MonitorKeys:
    base = f"{prefix}:{{{queue}}}:m:"
    return MonitorKeys(
        queue,
        f"{base}log",
        f"{base}ids",
        f"{base}fail",
        f"{base}fids",
        f"{base}fgroups",
        f"{base}total",
        f"{base}roll:",
        f"{base}rel",
        f"{base}relt",
    )


def score_of(entry_id: str) -> int:
    """The ``m:ids`` score of a log entry id ``ms-seq``: ``ms * 4096 + seq`` (exact in a double until
    2039; a sequence number past 4095 within one millisecond is clamped, and the reader then scans
    that millisecond's entries)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms) * 4096 + min(int(seq or 0), 4095)


def entry_of(score: float) -> tuple[int, int]:
    """The (ms, seq) of a log entry from its ``m:ids`` score."""
    s = int(score)
    return s // 4096, s % 4096
