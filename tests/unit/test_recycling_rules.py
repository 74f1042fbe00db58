"""Recycling rules without processes: the reasons, the age spread, and sizes on the command line."""

from __future__ import annotations

import random

import pytest

from celeriac.worker.recycling import Recycling, parse_size_kib


def test_reasons() -> None:
    r = Recycling(max_tasks=10, max_memory_kib=1000, max_age_s=60)
    assert r.reason(9, 999, 10, 59) == ""
    assert r.reason(10, None, 0, None) == "ran 10 tasks (max 10)"
    assert "resident memory 1000 KiB" in r.reason(1, 1000, 0, None)
    assert r.reason(1, None, 59.5, 59.0).startswith("60s old")
    assert not Recycling() and Recycling().reason(10**6, 10**9, 10**9, None) == ""


def test_age_limits_are_spread_below_the_maximum() -> None:
    rng = random.Random(7)
    limits = [Recycling(max_age_s=100).age_limit_s(rng) or 0.0 for _ in range(200)]
    assert all(90 <= limit <= 100 for limit in limits)
    assert max(limits) - min(limits) > 5  # children do not all restart together
    assert Recycling().age_limit_s() is None


@pytest.mark.parametrize(
    ("text", "kib"),
    [("512000", 512_000), ("500MB", 512_000), ("2G", 2 * 1024 * 1024), ("300KiB", 300), ("1.5m", 1536)],
)
def test_sizes(text: str, kib: int) -> None:
    assert parse_size_kib(text) == kib


@pytest.mark.parametrize("text", ["0", "-1", "x", "5T", ""])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a positive size"):
        parse_size_kib(text)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_tasks"):
        Recycling(max_tasks=0)
