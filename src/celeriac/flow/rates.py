"""Celery's rate syntax: ``"100/s"``, ``"10/m"``, ``"500/h"``, or a number (per second)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigurationError

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")
_PER_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Rate:
    """``count`` starts per ``per_s`` seconds, evenly spaced (Celery's token bucket of capacity 1)."""

    count: float
    per_s: float
    text: str

    @property
    def interval_us(self) -> int:
        """Microseconds between two starts (at least 1)."""
        return max(1, round(self.per_s * 1_000_000 / self.count))

    @property
    def interval_ms(self) -> float:
        """Milliseconds between two starts."""
        return self.interval_us / 1000

    def __str__(self) -> str:
        return self.text


def parse_rate(value: Any, what: str = "rate_limit") -> Rate | None:
    """A :class:`Rate`, or None for no limit (``None``, ``0``, ``"0"``, ``""``).

    Raises:
        ConfigurationError: not Celery's syntax (``"100/s"``, ``"10/m"``, ``"500/h"``, a number).
    """
    try:
        return rate_or_none(value)
    except ValueError as exc:
        raise ConfigurationError(what, str(exc)) from None


def rate_or_none(value: Any) -> Rate | None:
    """:func:`parse_rate` raising a plain ``ValueError`` (for option checks that raise TypeError)."""
    if value is None or value == "" or value == 0 or value == "0":
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected '100/s', '10/m', '500/h' or a number, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a rate must be positive, got {value!r}")
        return Rate(float(value), 1.0, f"{value:g}/s")
    if isinstance(value, str):
        m = _RATE.match(value)
        if m is not None:
            count = float(m[1])
            unit = m[2] or "s"
            if count == 0:
                return None
            return Rate(count, _PER_S[unit], f"{m[1]}/{unit}")
    raise ValueError(f"expected '100/s', '10/m', '500/h' or a number, got {value!r}")


def flow_options(
    rate_limit: Any,
    scope: str,
    rate_key: Any,
    max_concurrency: Any,
    concurrency_key: Any,
) -> dict[str, Any]:
    """A task's flow-control attributes, checked (``@app.task(rate_limit=..., max_concurrency=...)``).

    Raises:
        TypeError: a bad option (``@app.task`` reports it as a ConfigurationError naming the task).
    """
    try:
        rate = rate_or_none(rate_limit)
    except ValueError as exc:
        raise TypeError(f"rate_limit: {exc}") from None
    if scope not in ("global", "worker"):
        raise TypeError(f"rate_limit_scope must be 'global' or 'worker', got {scope!r}")
    for option, fn in (("rate_limit_key", rate_key), ("concurrency_key", concurrency_key)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{option} must be a callable of the task's arguments, got {fn!r}")
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
    ):
        raise TypeError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
    return {
        "rate": rate,
        "rate_limit": rate_limit,
        "rate_limit_scope": scope,
        "rate_limit_key": rate_key,
        "max_concurrency": max_concurrency,
        "concurrency_key": concurrency_key,
    }
