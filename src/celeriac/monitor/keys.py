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
``<prefix>:{<q>}:m:ix``                    string       the lookup index: a 4-byte key per recorded
                                                        outcome (:func:`id_keys`), in the order
                                                        recorded; numbered from ``base`` in ``m:ixh``;
                                                        cut from the front with the log; key TTL
``<prefix>:{<q>}:m:ixh``                   hash         ``n``: outcomes recorded so far (the number of
                                                        the next one), ``base``: number of the first
                                                        key kept in ``m:ix``; key TTL
``<prefix>:{<q>}:m:ents``                  sorted set   log entry id -> number of its first outcome:
                                                        maps an ``m:ix`` position to its log entry, and
                                                        what the cap (``monitor_max_entries``) trims
                                                        by; same bounds as the log
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
                                                        as the log (through ``m:relt``); key TTL
``<prefix>:{<q>}:m:relt``                  sorted set   the same members by the score of their log
                                                        entry: what trims ``m:rel`` (cap, retention)
``<prefix>:{<q>}:m:roll:<res>:<bucket>``   hash         per-minute (``m``, 48 h), per-hour (``h``,
                                                        retention + 1 day) and per-day (``d``,
                                                        retention) rollups; ``bucket`` = epoch
                                                        seconds / bucket length
=========================================  ===========  ==============================================
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Sequence
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
    ix: str
    ixh: str
    ents: str
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
        f"{base}ix",
        f"{base}ixh",
        f"{base}ents",
        f"{base}fail",
        f"{base}fids",
        f"{base}fgroups",
        f"{base}total",
        f"{base}roll:",
        f"{base}rel",
        f"{base}relt",
    )


def score_of(entry_id: str) -> int:
    """The ``m:fids`` score of a log entry id ``ms-seq``: ``ms * 4096 + seq`` (exact in a double until
    2039; a sequence number past 4095 within one millisecond is clamped, and the reader then scans
    that millisecond's entries)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms) * 4096 + min(int(seq or 0), 4095)


def entry_of(score: float) -> tuple[int, int]:
    """The (ms, seq) of a stream entry from its ``m:fids`` score."""
    s = int(score)
    return s // 4096, s % 4096


#: bytes per task id in the lookup index ``m:ix``
ID_KEY_BYTES = 4
_DASHES = (8, 13, 18, 23)


def id_keys(task_ids: Sequence[str], nul_joined: str | None = None) -> bytes:
    """The lookup-index keys of ``task_ids``, joined: :data:`ID_KEY_BYTES` bytes each, in order.

    A key only narrows a lookup down to candidate log entries (the reader then compares the ids
    themselves), so it need not be unique, only the same for the same id everywhere and spread out.
    For a UUID-shaped id (36 characters, dashes where a UUID has them, hexadecimal around the first
    8 and the last 8) it is its first 4 bytes XOR its last 4: random in version 4 and version 7 ids
    (whose first bytes are a timestamp) alike. Computed a column at a time over the whole batch, with
    no Python code per id: this runs for every task a worker records. Any other id: the first 4
    bytes of its BLAKE2b digest. ``nul_joined``, when the caller has it: the ids joined by NUL, none
    of them holding one (then where the separators are shows every id's length).
    """
    n = len(task_ids)
    text = b""
    if nul_joined is not None:
        stride = 37
        encoded = nul_joined.encode("ascii", "replace")  # (one byte per character either way)
        if len(encoded) == 37 * n - 1 and encoded[36::37] == b"\x00" * (n - 1):
            text = encoded
    elif n and set(map(len, task_ids)) == {36}:
        stride = 36
        text = "".join(task_ids).encode("ascii", "replace")
    if text and all(text[d::stride] == b"-" * n for d in _DASHES):
        # every id's first 8 and last 8 characters, id after id (a column at a time), then as bytes
        head, tail = bytearray(8 * n), bytearray(8 * n)
        for c in range(8):
            head[c::8] = text[c::stride]
            tail[c::8] = text[28 + c :: stride]
        try:
            first, last = binascii.unhexlify(head), binascii.unhexlify(tail)
        except binascii.Error:  # not hexadecimal there: not UUID-shaped
            pass
        else:
            xor = int.from_bytes(first, "little") ^ int.from_bytes(last, "little")
            return xor.to_bytes(4 * n, "little")
    if n == 1:
        tid = task_ids[0]
        return hashlib.blake2b(tid.encode("utf-8", "surrogatepass"), digest_size=ID_KEY_BYTES).digest()
    return b"".join(id_keys([tid]) for tid in task_ids)
