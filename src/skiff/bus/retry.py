"""Retry delays: exponential backoff with full jitter.

Full jitter (a uniform draw between zero and the exponential ceiling) spreads
the retries of many consumers that failed together, so a dependency that went
down is not hit by synchronized waves when it comes back. Pure: pass
``jitter=None`` (or a fixed function) to get the ceiling itself in tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable

#: 2**64 seconds is already beyond any cap; larger exponents only overflow.
_MAX_EXPONENT = 64


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0,
            jitter: Callable[[], float] | None = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry).

    The ceiling is ``min(cap, base * 2 ** (attempt - 1))``; the result is
    ``jitter() * ceiling`` with ``jitter`` returning a float in ``[0, 1)``.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    return ceiling if jitter is None else jitter() * ceiling
