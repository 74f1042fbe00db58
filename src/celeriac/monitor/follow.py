"""Follow task outcomes as workers record them (``celeriac events``): a tail of the recent-outcome logs.

Each queue's ``m:log`` stream (:mod:`celeriac.monitor.keys`) gets one entry per recorded batch; this
reads new entries with ``XREAD BLOCK`` (one blocking call for every followed queue: no polling, no load
on the workers, nothing written). Queues are re-listed every few seconds when none were named, so a
queue that appears later is followed too. Redis Cluster: one ``XREAD`` may only name keys of one hash
slot, so there each queue is read in turn with a short block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._redis.client import to_str
from .keys import monitor_keys
from .record import TaskRecord, decode_entry

_RELIST_S = 5.0
# log entries per XREAD (each holds one recorded batch, up to a few hundred outcomes): a --since over
# a long backlog streams in bounded replies instead of one reply holding all of it
_BATCH_ENTRIES = 100


def follow(
    client: Any,
    prefix: str,
    queues: Callable[[], Sequence[str]],
    *,
    since_ms: int | None = None,
    block_ms: int = 1000,
    stop: Callable[[], bool] = lambda: False,
    cluster: bool = False,
) -> Iterator[list[TaskRecord]]:
    """Yield outcomes as they are recorded, oldest first, a list per read (flush output per list).

    Args:
        client: a synchronous redis-py client (``decode_responses`` off).
        prefix: the app's key prefix.
        queues: returns the queues to follow (called again every few seconds).
        since_ms: start with outcomes recorded since this epoch-ms time; None: only new ones.
        block_ms: how long one ``XREAD`` waits (``stop`` is checked between calls).
        stop: return True to end the iteration.
        cluster: read each queue with its own ``XREAD`` (keys of several slots cannot share one).
    """
    positions: dict[bytes, str] = {}  # stream key -> last id read
    names: dict[bytes, str] = {}  # stream key -> queue
    listed_at = float("-inf")
    start = "$" if since_ms is None else f"{since_ms}-0"
    while not stop():
        now = time.monotonic()
        if now - listed_at >= _RELIST_S:
            listed_at = now
            for q in queues():
                key = monitor_keys(prefix, q).log.encode()
                if key not in positions:
                    positions[key] = _resolve(client, key, start)
                    names[key] = q
        if not positions:
            time.sleep(min(block_ms / 1000, _RELIST_S))
            continue
        groups = [[k] for k in positions] if cluster else [list(positions)]
        for keys in groups:
            reply = client.xread(
                {k: positions[k] for k in keys}, count=_BATCH_ENTRIES, block=block_ms // len(groups) or 1
            )
            batch: list[TaskRecord] = []
            for key, entries in _items(reply):
                key_b = key if isinstance(key, bytes) else str(key).encode()
                for entry_id_raw, fields in entries:
                    entry_id = to_str(entry_id_raw)
                    positions[key_b] = entry_id
                    data = fields.get(b"r") or fields.get("r")
                    worker = to_str(fields.get(b"w") or fields.get("w") or b"")
                    if isinstance(data, bytes):
                        batch += decode_entry(data, names[key_b], worker, entry_id)
            if batch:
                yield batch


def _resolve(client: Any, key: bytes, start: str) -> str:
    # "$" must become a concrete id once: XREAD with "$" again would skip what arrived between calls
    if start != "$":
        return start
    last = client.xrevrange(key, count=1)
    return to_str(last[0][0]) if last else "0-0"


def _items(reply: Any) -> list[tuple[Any, list[tuple[Any, dict[Any, Any]]]]]:
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3
        return list(reply.items())
    return [(k, v) for k, v in reply]


__all__ = ["follow"]
