"""When a process running tasks should be replaced: after N tasks, above a resident size, or with age.

The processes pool applies these limits to each child (and replaces it); pools without children
apply them to the whole worker, which stops fetching, lets running tasks finish, and re-executes
itself (``celeriac worker`` does; see ``Worker.recycle_reason``). So no external supervisor is needed
to recycle a worker that leaks memory.

Why a random spread on the age: children (or workers) started together would otherwise restart
together, and all their capacity would dip at once. Each process draws its own limit, up to 10%
below the configured age.
"""

from __future__ import annotations

import os
import random
import re
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..exceptions import ConfigurationError

AGE_SPREAD = 0.10


@dataclass(frozen=True)
class Recycling:
    """Recycling limits (``None``: no limit).

    Attributes:
        max_tasks: replace a process after it ran this many tasks (``--max-tasks-per-child``).
        max_memory_kib: replace a process whose resident memory after a task is at least this many
            KiB (``--max-memory-per-child``).
        max_age_s: replace a process once it is this old, minus a random spread of up to 10%
            (``--max-child-age``).
    """

    max_tasks: int | None = None
    max_memory_kib: int | None = None
    max_age_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_tasks", "max_memory_kib", "max_age_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigurationError(name, f"must be > 0, got {value!r}")

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.max_tasks, self.max_memory_kib, self.max_age_s))

    def age_limit_s(self, rng: random.Random | None = None) -> float | None:
        """This process's own age limit: the configured one minus a random spread."""
        if self.max_age_s is None:
            return None
        return self.max_age_s * (1.0 - AGE_SPREAD * (rng or random).random())

    def reason(self, tasks: int, rss_kib: int | None, age_s: float, age_limit_s: float | None) -> str:
        """Why a process with these figures must be replaced now, or "" if it may go on."""
        if self.max_tasks is not None and tasks >= self.max_tasks:
            return f"ran {tasks} tasks (max {self.max_tasks})"
        if self.max_memory_kib is not None and rss_kib is not None and rss_kib >= self.max_memory_kib:
            return f"resident memory {rss_kib} KiB after a task (max {self.max_memory_kib} KiB)"
        if age_limit_s is not None and age_s >= age_limit_s:
            return f"{age_s:.0f}s old (max {self.max_age_s:g}s, this process {age_limit_s:.0f}s)"
        return ""


NO_RECYCLING = Recycling()

RSS_CHECK_INTERVAL_S = 0.2  # reading the resident size is a system call: not after every tiny task


class SelfRecycling:
    """Recycling of a whole worker (pools without children): counts its tasks, watches its size.

    Args:
        limits: the recycling limits.
        resident: reads this process's resident KiB (injectable for tests).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        limits: Recycling,
        resident: Callable[[], int | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._resident = resident or resident_kib
        self._clock = clock
        self._tasks = 0
        self._rss_checked_at = float("-inf")  # so the first task is always checked
        #: this process's own age limit (spread drawn once), or None
        self.age_limit_s = limits.age_limit_s()

    def after_task(self) -> str:
        """Count a finished task; the reason to recycle now, or ""."""
        self._tasks += 1
        rss_kib = None
        if self.limits.max_memory_kib is not None:
            now = self._clock()
            if now - self._rss_checked_at >= RSS_CHECK_INTERVAL_S:
                self._rss_checked_at = now
                rss_kib = self._resident()
        return self.limits.reason(self._tasks, rss_kib, 0.0, None)


def resident_kib() -> int | None:
    """This process's resident set size now, in KiB (None where it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        pass
    # no /proc (macOS): the peak, not the current size; good enough to catch a leak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def parse_size_kib(text: str) -> int:
    """``"512000"`` (KiB, as Celery), ``"500MB"``, ``"2G"``, ``"300KiB"`` -> KiB.

    Raises:
        ValueError: not a positive size.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None or not float(match["number"]) > 0:
        raise ConfigurationError(
            "max_memory_per_child", f"not a positive size: {text!r} (KiB, or with a unit: 300MB, 2G)"
        )
    return max(1, int(float(match["number"]) * _UNIT_KIB[match["unit"].upper()]))


_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kmg]?)(?:i?b)?", re.IGNORECASE)
_UNIT_KIB = {"": 1, "K": 1, "M": 1024, "G": 1024 * 1024}


def reexec() -> None:
    """Replace this process with a fresh run of the same command line (same pid, same arguments).

    Used by ``celeriac worker`` once a recycled worker has drained: a new interpreter frees every
    leaked byte, which no in-process clean-up can promise. Never returns (raises OSError on failure).
    """
    import logging

    logging.shutdown()  # flush log handlers: the new image starts with empty buffers
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
