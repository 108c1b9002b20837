"""The invocation log interface: invocation records, their stats, app logs with retention.

Two backends keep it: :class:`skiff.store.sqlite.Store` and
:class:`skiff.store.records_postgres.PostgresInvocationLog`;
tests/store/test_records_contract.py is the contract both keep.

Writes (:meth:`InvocationLog.record`, :meth:`InvocationLog.log`) are off the
request path: they are buffered and written in batches by a background thread.
Every read flushes first, so what a caller reads is complete.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LogRetention:
    """How much app output the store keeps: by age, and per app by line count and
    by bytes, oldest first (an app printing at its rate limit never evicts
    another app's lines)."""

    max_age_days: float = 7.0
    max_lines_per_app: int = 100_000
    max_bytes_per_app: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class Invocation:
    id: str
    app: str
    revision: str
    instance: str
    trigger: str
    cold: bool
    init_ms: float
    duration_ms: float
    queued_ms: float
    memory_mb: int
    status: int
    error: str | None
    ts: float
    trace_id: str = ""  # W3C trace id (32 hex) of the span the invocation ran under

    @property
    def billed_ms(self) -> int:
        # Lambda bills in 1 ms steps, rounding up.
        return max(1, int(-(-self.duration_ms // 1)))


class InvocationLog(abc.ABC):
    """Records and logs of every app. Thread-safe."""

    @abc.abstractmethod
    def record(self, inv: Invocation) -> None:
        """Buffer one invocation record (never blocks on the database)."""

    @abc.abstractmethod
    def log(self, app: str, revision: str, instance: str, request_id: str, stream: str,
            line: str) -> None:
        """Buffer one line of app (or platform) output."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Write what is buffered now."""

    @abc.abstractmethod
    def invocations(self, app: str, limit: int = 100) -> list[dict]:
        """The app's latest records, newest first."""

    @abc.abstractmethod
    def logs(self, app: str, after: int = 0, limit: int = 500,
             stream: str | None = None, *, newest: bool = False, since: float | None = None,
             request_id: str | None = None) -> list[dict]:
        """The app's lines with ``seq > after``, oldest first (``seq`` pages): the first
        ``limit`` of them, or with ``newest`` the last ``limit``; only those written at or
        after ``since`` (epoch seconds) and of ``request_id`` when given."""

    @abc.abstractmethod
    def stats(self, app: str, window: int = 1000) -> dict:
        """Counts over all time; latency percentiles over the last ``window`` requests."""

    @abc.abstractmethod
    def usage(self, app: str, since: float, until: float, step_ms: int = 100) -> dict:
        """Sums over the app's records with ``since <= ts < until`` (what the cost model
        prices, ``skiff.observe.cost.Usage``): the keys of :data:`USAGE_KEYS`."""

    @abc.abstractmethod
    def retire_records(self, app: str, when: float | None = None) -> str:
        """Keep a deleted app's records and logs as ``<app>@deleted-<unix time>``
        (a later app of the same name starts with no history); return that name."""

    @abc.abstractmethod
    def prune_logs(self, now: float | None = None) -> int:
        """Delete what retention does not keep; return how many lines went."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Write what is buffered and release the backend's resources."""


#: the sums ``InvocationLog.usage`` returns: requests, errors (status >= 500), cold
#: starts, billed duration and INIT (ms), each times the reserved memoryMB, the duration
#: plus INIT rounded up to ``step_ms`` per record and that times memoryMB, and the
#: measured memory x time (0: records do not carry a measured use yet)
USAGE_KEYS = ("requests", "errors", "cold", "billed_ms", "init_ms", "mb_ms", "mb_init_ms",
              "step_ms", "mb_step_ms", "used_mb_ms")


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    # nearest rank: the smallest value with at least q% of values at or below it
    k = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)
    return round(sorted_values[k], 3)


def retired_name(app: str, when: float) -> str:
    return f"{app}@deleted-{int(when)}"
