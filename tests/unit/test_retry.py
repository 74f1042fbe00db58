from __future__ import annotations

import pytest

from celeriac.retry import backoff_delay_s


def test_exponential_without_jitter() -> None:
    delays = [backoff_delay_s(n, factor_s=1.0, max_s=600, jitter=False) for n in range(6)]
    assert delays == [1, 2, 4, 8, 16, 32]


def test_cap_applies_and_huge_retry_counts_do_not_overflow() -> None:
    assert backoff_delay_s(20, factor_s=1.0, max_s=600, jitter=False) == 600
    assert backoff_delay_s(10_000, factor_s=1.0, max_s=600, jitter=False) == 600


def test_full_jitter_draws_between_zero_and_the_delay() -> None:
    assert backoff_delay_s(3, factor_s=2.0, max_s=600, jitter=True, rand=lambda: 0.0) == 0.0
    assert backoff_delay_s(3, factor_s=2.0, max_s=600, jitter=True, rand=lambda: 0.5) == 8.0
    assert backoff_delay_s(3, factor_s=2.0, max_s=10, jitter=True, rand=lambda: 0.999) == pytest.approx(9.99)


def test_negative_retries_is_an_error() -> None:
    with pytest.raises(ValueError):
        backoff_delay_s(-1)
