"""Rollup fields: counters and fixed-bucket runtime histograms, per task name and per queue.

One rollup hash (a minute, an hour or a day of one queue; or the queue's lifetime ``m:total``) has,
for each task name and for ``*`` (the whole queue):

* ``<name>|<STATE>``: outcomes in that state (see :data:`celeriac.monitor.record.STATES`);
* ``<name>|h<i>``: runs whose runtime fell in bucket ``i`` (not cumulative; bucket ``i`` holds
  runtimes ``<= RUNTIME_BUCKETS_S[i]`` and above the previous bound; the last one is +Inf);
* ``<name>|us``: the sum of those runtimes, in microseconds.

Task names come from the messages; a queue with more than :data:`MAX_NAMES` distinct names in one
batch folds the rest into ``(other)`` so a hash cannot grow without bound.
"""

from __future__ import annotations

ALL = "*"
#: upper bounds of the runtime histogram buckets, seconds (the last bucket is +Inf)
RUNTIME_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: the same bounds in microseconds, for bisect on integer runtimes
RUNTIME_BUCKETS_US = tuple(int(b * 1_000_000) for b in RUNTIME_BUCKETS_S)
N_BUCKETS = len(RUNTIME_BUCKETS_S) + 1
MAX_NAMES = 500


def count_field(name: str, state: str) -> str:
    return f"{name}|{state}"


def bucket_field(name: str, i: int) -> str:
    return f"{name}|h{i}"


def sum_field(name: str) -> str:
    return f"{name}|us"
