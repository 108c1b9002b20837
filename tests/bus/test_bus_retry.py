"""Exponential backoff with full jitter, checked with fixed jitter functions."""

from __future__ import annotations

import random

import pytest

from skiff.bus.retry import backoff


@pytest.mark.parametrize("attempt, expected", [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0),
                                               (10, 300.0), (10_000, 300.0)])
def test_ceiling_doubles_up_to_the_cap(attempt: int, expected: float) -> None:
    """Without jitter the delay is base * 2**(attempt-1), capped (even for huge attempts)."""
    assert backoff(attempt, jitter=None) == expected


def test_full_jitter_scales_the_ceiling() -> None:
    """The jitter draw multiplies the ceiling: 0 gives no wait, 0.5 half the ceiling."""
    assert backoff(3, base=2.0, jitter=lambda: 0.0) == 0.0
    assert backoff(3, base=2.0, jitter=lambda: 0.5) == 4.0


def test_default_jitter_stays_within_bounds() -> None:
    """With the default random jitter every delay lies in [0, ceiling)."""
    random.seed(7)
    for attempt in range(1, 20):
        assert 0.0 <= backoff(attempt, base=0.5, cap=60) < min(60, 0.5 * 2 ** (attempt - 1))


def test_bad_arguments() -> None:
    """Attempts count from 1 and base/cap are not negative."""
    with pytest.raises(ValueError):
        backoff(0)
    with pytest.raises(ValueError):
        backoff(1, base=-1)
