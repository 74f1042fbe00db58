"""Retry delays: exponential backoff with full jitter and a cap. Pure functions, no I/O."""

from __future__ import annotations

import random
from collections.abc import Callable

from .exceptions import ConfigurationError


def backoff_delay_s(
    retries: int,
    *,
    factor_s: float = 1.0,
    max_s: float = 600.0,
    jitter: bool = True,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number ``retries + 1``: ``min(max_s, factor_s * 2**retries)``.

    With ``jitter`` (full jitter, as in AWS's "Exponential Backoff And Jitter"), the delay is drawn
    uniformly from ``[0, that]``: many tasks failing together do not retry together.

    Args:
        retries: how many retries already happened (0 before the first retry).
        factor_s: the first delay (``retry_backoff=True`` means 1 s; a number means that many seconds).
        max_s: the cap (``retry_backoff_max``).
        jitter: draw from ``[0, delay]`` instead of using the delay itself.
        rand: source of uniform numbers in ``[0, 1)``; injectable for tests.
    """
    if retries < 0:
        raise ConfigurationError("retries", f"must be >= 0, got {retries!r}")
    # cap the exponent before computing 2**n: a task with max_retries=None may retry thousands of times
    delay = min(max_s, factor_s * (2 ** min(retries, 62)))
    return float(delay * rand()) if jitter else float(delay)
