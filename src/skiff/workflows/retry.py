"""Retriers and Catchers: which one matches an error, and how long to wait. Pure: the
jitter's random draw comes in as an argument."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ALL, NOT_MATCHED_BY_ALL, TASK_FAILED

# The spec's defaults.
DEFAULT_INTERVAL_SECONDS = 1
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_RATE = 2.0


@dataclass(frozen=True)
class Retrier:
    error_equals: tuple[str, ...]
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_rate: float = DEFAULT_BACKOFF_RATE
    max_delay_seconds: float | None = None
    jitter: str = "NONE"  # or "FULL"

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Retrier:
        return cls(error_equals=tuple(raw.get("ErrorEquals", ())),
                   interval_seconds=raw.get("IntervalSeconds", DEFAULT_INTERVAL_SECONDS),
                   max_attempts=raw.get("MaxAttempts", DEFAULT_MAX_ATTEMPTS),
                   backoff_rate=raw.get("BackoffRate", DEFAULT_BACKOFF_RATE),
                   max_delay_seconds=raw.get("MaxDelaySeconds"),
                   jitter=raw.get("JitterStrategy", "NONE"))

    def delay(self, retry_number: int, draw: float) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry).
        ``draw`` is a uniform number in [0, 1), used only by FULL jitter."""
        d = self.interval_seconds * self.backoff_rate ** (retry_number - 1)
        if self.max_delay_seconds is not None:
            d = min(d, self.max_delay_seconds)
        if self.jitter == "FULL":
            d = d * draw
        return d


@dataclass(frozen=True)
class Catcher:
    error_equals: tuple[str, ...]
    next: str
    result_path: str | None = "$"
    output: Any = None  # JSONata
    assign: Any = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Catcher:
        return cls(error_equals=tuple(raw.get("ErrorEquals", ())), next=raw["Next"],
                   result_path=raw.get("ResultPath", "$"), output=raw.get("Output"),
                   assign=raw.get("Assign"))


def matches(error_equals: Sequence[str], error: str | None) -> bool:
    """Whether an ErrorEquals list covers ``error`` (spec: States.ALL covers every error
    but States.Runtime; States.TaskFailed covers every task failure but States.Timeout)."""
    name = error or ""
    for e in error_equals:
        if e == name:
            return True
        if e == ALL and name not in NOT_MATCHED_BY_ALL:
            return True
        if e == TASK_FAILED and not name.startswith("States.") and name:
            return True
    return False


def find(rules: Sequence[Any], error: str | None) -> int | None:
    for i, r in enumerate(rules):
        if matches(r.error_equals, error):
            return i
    return None
