"""Budgets: an operator caps what an owner's apps (``user:NAME`` or ``group:NAME``)
may use in a calendar month (UTC): money (Skiff's own cost, ``skiff.observe.cost``),
GB-seconds, or requests. At :data:`NOTIFY_AT` percent the owner is told (the
lifecycle's outbox: webhook and e-mail, and a CloudEvent ``skiff.budget.threshold``
on the bus); at 100 % the budget's ``action`` applies until the month ends:

- ``throttle``: the apps' routes answer 429 ``budget_exceeded`` with Retry-After
  (seconds to the next month); their async and queue invocations are held in
  their queues, not run and not lost, and run when the budget allows again.
- ``scale-to-zero``: the apps' instances stop and minInstances / warm windows are
  ignored; requests are still served, each on an instance started for it.
- ``notify``: nothing but the notices.

:func:`evaluate` is pure (usage, budget, now) -> :class:`Verdict`, table-tested;
the platform applies verdicts on its tick and the gateway reads the result from
memory. Each notice is claimed once per budget, month and threshold (a
compare-and-set, so nodes sharing a database send it once); the claim of 100 %
is what keeps the action on until the month ends. Changing a budget starts its
notices over.

    404 budget_not_found   no budget of that owner (and metric)
    429 budget_exceeded    the app's owner is over a throttling budget this month
    400 bad_budget         a limit, metric, action or owner that cannot be a budget
"""

from __future__ import annotations

import abc
import calendar
import math
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from skiff.errors import NotFound, SkiffError, TooManyRequests
from skiff.governance.identity_rows import SQLiteFile

METRICS = ("cost", "gb_s", "requests")
ACTIONS = ("throttle", "scale-to-zero", "notify")
NOTIFY_AT = 80  # percent
EXCEEDED = 100
EVENT_TYPE = "skiff.budget.threshold"
EVENT_SOURCE = "skiff/governance/budgets"
_OWNER = re.compile(r"^(user|group):[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class BudgetExceeded(TooManyRequests):
    code = "budget_exceeded"


class BudgetNotFound(NotFound):
    code = "budget_not_found"


def bad_budget(message: str) -> SkiffError:
    return SkiffError(message, code="bad_budget", status=400)


@dataclass(frozen=True, slots=True)
class Budget:
    owner: str  # user:NAME or group:NAME: the apps whose metadata.owner it is
    metric: str  # one of METRICS
    limit: float  # per calendar month (UTC); cost in the cost model's currency
    action: str  # one of ACTIONS
    created: float = 0.0
    created_by: str = ""

    @property
    def id(self) -> str:
        return f"{self.owner}/{self.metric}"

    def to_dict(self) -> dict:
        return {"id": self.id, "owner": self.owner, "metric": self.metric, "limit": self.limit,
                "period": "month", "action": self.action, "created": self.created,
                "created_by": self.created_by}


def budget(owner: Any, metric: Any, limit: Any, action: Any = "throttle", *,
           created: float = 0.0, created_by: str = "") -> Budget:
    """A checked :class:`Budget` of what a client sent."""
    if not isinstance(owner, str) or not _OWNER.match(owner):
        raise bad_budget(f"owner must be user:NAME or group:NAME, got {owner!r}")
    if metric not in METRICS:
        raise bad_budget(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not (
            math.isfinite(limit) and limit > 0):
        raise bad_budget(f"limit must be a number above 0 (a month's {metric}), got {limit!r}")
    if action not in ACTIONS:
        raise bad_budget(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    return Budget(owner, metric, float(limit), action, created, created_by)


def period(now: float) -> tuple[float, float]:
    """The calendar month (UTC) holding ``now``: [start, end)."""
    t = time.gmtime(now)
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(start), float(calendar.timegm((year, month, 1, 0, 0, 0)))


@dataclass(frozen=True)
class Verdict:
    """What a budget says at ``now``: its use, the notice due (80 or 100, once each), and
    the action in force."""

    budget: Budget
    used: float
    percent: float
    period_start: float
    period_end: float
    notify: int | None  # the threshold to tell the owner of now, if not told yet
    action: str | None  # "throttle" or "scale-to-zero" while over; None otherwise

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.period_end - time.time()))

    def to_dict(self) -> dict:
        return self.budget.to_dict() | {
            "used": float(f"{self.used:.6g}"), "percent": round(self.percent, 1),
            "period": {"start": self.period_start, "end": self.period_end},
            "state": ("exceeded" if self.percent >= EXCEEDED else
                      "warning" if self.percent >= NOTIFY_AT else "ok"),
            "enforced": self.action}


def evaluate(used: float, b: Budget, now: float, notified: tuple[int, ...] = ()) -> Verdict:
    """The verdict of ``b`` with ``used`` this month; ``notified``: the thresholds whose
    notices went out this month already. Over the limit, the action holds for the rest
    of the month (a notice of 100 sent this month keeps it on, whatever the use reads
    later: records a node has not flushed yet, or a clock set back)."""
    start, end = period(now)
    percent = used / b.limit * 100
    over = percent >= EXCEEDED or EXCEEDED in notified
    due = EXCEEDED if percent >= EXCEEDED else NOTIFY_AT if percent >= NOTIFY_AT else None
    if due is not None and due in notified:
        due = None
    if due == NOTIFY_AT and EXCEEDED in notified:
        due = None
    action = b.action if over and b.action != "notify" else None
    return Verdict(b, used, percent, start, end, due, action)


def exceeded_error(app: str, v: Verdict) -> BudgetExceeded:
    """The 429 an app's routes answer while ``v`` throttles it."""
    b = v.budget
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(v.period_end))
    return BudgetExceeded(
        f"app {app} is paused: its owner {b.owner} used {v.used:g} of a monthly {b.metric} "
        f"budget of {b.limit:g}; it serves again on {when}, or when an operator raises the "
        f"budget (`skiff budgets set {b.owner} --{b.metric.replace('_', '-')} N`)",
        budget=b.id, used=float(f"{v.used:.6g}"), limit=b.limit,
        retry_after=v.retry_after)


# -- storage ----------------------------------------------------------------------------
class BudgetRows(abc.ABC):
    """Budgets and the notices claimed per month. Thread-safe, and safe across nodes."""

    @abc.abstractmethod
    def put(self, b: Budget) -> None:
        """Add or replace the budget of (owner, metric); its notices start over."""

    @abc.abstractmethod
    def list(self) -> list[Budget]: ...

    @abc.abstractmethod
    def remove(self, owner: str, metric: str | None) -> int:
        """Drop the owner's budget of ``metric`` (None: all of the owner's); how many."""

    @abc.abstractmethod
    def claim(self, budget_id: str, period_start: float, threshold: int) -> bool:
        """Mark the notice sent; False when it was claimed already."""

    @abc.abstractmethod
    def notified(self, budget_id: str, period_start: float) -> tuple[int, ...]: ...

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS gov_budgets (
  owner TEXT NOT NULL, metric TEXT NOT NULL, limit_value REAL NOT NULL, action TEXT NOT NULL,
  created REAL NOT NULL, created_by TEXT NOT NULL, PRIMARY KEY (owner, metric));
CREATE TABLE IF NOT EXISTS gov_budget_notices (
  budget TEXT NOT NULL, period REAL NOT NULL, threshold INTEGER NOT NULL,
  PRIMARY KEY (budget, period, threshold));
"""
_COLUMNS = "owner, metric, limit_value, action, created, created_by"


def _row(r: tuple) -> Budget:
    return Budget(r[0], r[1], float(r[2]), r[3], float(r[4]), r[5])


class SQLiteBudgetRows(BudgetRows):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._f = SQLiteFile(path)
        self._f.write(lambda db: [db.execute(s) for s in _SCHEMA.split(";") if s.strip()])

    def put(self, b: Budget) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(f"INSERT OR REPLACE INTO gov_budgets ({_COLUMNS}) VALUES "
                       "(?, ?, ?, ?, ?, ?)",
                       (b.owner, b.metric, b.limit, b.action, b.created, b.created_by))
            db.execute("DELETE FROM gov_budget_notices WHERE budget = ?", (b.id,))
        self._f.write(work)

    def list(self) -> list[Budget]:
        return [_row(r) for r in self._f.read(
            f"SELECT {_COLUMNS} FROM gov_budgets ORDER BY owner, metric")]

    def remove(self, owner: str, metric: str | None) -> int:
        def work(db: sqlite3.Connection) -> int:
            gone = [f"{owner}/{m}" for (m,) in db.execute(
                "SELECT metric FROM gov_budgets WHERE owner = ? AND (? IS NULL OR metric = ?)",
                (owner, metric, metric))]
            for budget_id in gone:
                db.execute("DELETE FROM gov_budget_notices WHERE budget = ?", (budget_id,))
            db.execute("DELETE FROM gov_budgets WHERE owner = ? AND (? IS NULL OR metric = ?)",
                       (owner, metric, metric))
            return len(gone)
        return self._f.write(work)  # type: ignore[return-value]

    def claim(self, budget_id: str, period_start: float, threshold: int) -> bool:
        return self._f.write(lambda db: db.execute(  # type: ignore[return-value]
            "INSERT OR IGNORE INTO gov_budget_notices VALUES (?, ?, ?)",
            (budget_id, period_start, threshold)).rowcount == 1)

    def notified(self, budget_id: str, period_start: float) -> tuple[int, ...]:
        return tuple(sorted(t for (t,) in self._f.read(
            "SELECT threshold FROM gov_budget_notices WHERE budget = ? AND period = ?",
            (budget_id, period_start))))

    def close(self) -> None:
        self._f.close()


class PostgresBudgetRows(BudgetRows):
    def __init__(self, db: Any) -> None:
        """``db``: a :class:`skiff.store.postgres.PostgresDatabase` (migration 0007)."""
        self.db = db

    def put(self, b: Budget) -> None:
        with self.db.transaction() as conn:
            conn.execute(f"INSERT INTO gov_budgets ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                         "ON CONFLICT (owner, metric) DO UPDATE SET limit_value = "
                         "EXCLUDED.limit_value, action = EXCLUDED.action, created = "
                         "EXCLUDED.created, created_by = EXCLUDED.created_by",
                         (b.owner, b.metric, b.limit, b.action, b.created, b.created_by))
            conn.execute("DELETE FROM gov_budget_notices WHERE budget = %s", (b.id,))

    def list(self) -> list[Budget]:
        with self.db.connection() as conn:
            return [_row(r) for r in conn.execute(
                f"SELECT {_COLUMNS} FROM gov_budgets ORDER BY owner, metric").fetchall()]

    def remove(self, owner: str, metric: str | None) -> int:
        with self.db.transaction() as conn:
            gone = [m for (m,) in conn.execute(
                "DELETE FROM gov_budgets WHERE owner = %s AND (%s::text IS NULL OR metric = %s) "
                "RETURNING metric", (owner, metric, metric)).fetchall()]
            for m in gone:
                conn.execute("DELETE FROM gov_budget_notices WHERE budget = %s",
                             (f"{owner}/{m}",))
        return len(gone)

    def claim(self, budget_id: str, period_start: float, threshold: int) -> bool:
        with self.db.connection() as conn:
            return conn.execute("INSERT INTO gov_budget_notices VALUES (%s, %s, %s) "
                                "ON CONFLICT DO NOTHING",
                                (budget_id, period_start, threshold)).rowcount == 1

    def notified(self, budget_id: str, period_start: float) -> tuple[int, ...]:
        with self.db.connection() as conn:
            return tuple(sorted(t for (t,) in conn.execute(
                "SELECT threshold FROM gov_budget_notices WHERE budget = %s AND period = %s",
                (budget_id, period_start)).fetchall()))
