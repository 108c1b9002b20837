"""Cost figures and budgets over the parts: the invocation log's sums priced by the
cost model (``skiff.observe.cost``), budgets judged by ``skiff.governance.budgets``
and applied to the apps of their owners.

:meth:`Spending.evaluate` runs on the platform's sweep (every minute; tests move
its clock through the admin API): one aggregate query per app of an owner with a
budget, then the pure verdicts. What it decides is kept in memory
(:attr:`Spending.throttled`, :attr:`Spending.zeroed`), so the gateway's check on
every request is one dict lookup, never a query.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from skiff.governance.budgets import (
    EVENT_SOURCE,
    EVENT_TYPE,
    Budget,
    BudgetExceeded,
    BudgetRows,
    Verdict,
    evaluate,
    exceeded_error,
    period,
)
from skiff.governance.lifecycle import Lifecycle
from skiff.observe.cost import CostModel, Usage, app_cost, prices, report
from skiff.platform.registry import Registry
from skiff.store import Store

log = logging.getLogger(__name__)
#: the inventory's cost column: the last 30 days
INVENTORY_DAYS = 30


@dataclass
class Applied:
    """What the last evaluation put in force, by app."""

    throttled: dict[str, Verdict] = field(default_factory=dict)
    zeroed: dict[str, Verdict] = field(default_factory=dict)


class Spending:
    def __init__(self, *, registry: Registry, store: Store, rows: BudgetRows,
                 model: CostModel, lifecycle: Lifecycle) -> None:
        self._registry = registry
        self._store = store
        self.rows = rows
        self.model = model
        self._lifecycle = lifecycle
        self.applied = Applied()
        self._verdicts: list[Verdict] = []

    # -- cost ------------------------------------------------------------------------
    def usage(self, app: str, since: float, until: float) -> Usage:
        return Usage(**self._store.usage(app, since, until, self.model.run_step_ms))

    def report(self, by: str, since: float, until: float) -> dict:
        """Blocking (storage): run it off the loop."""
        apps = {name: (a.manifest.metadata.owner or "", a.manifest.spec.resources.cpu,
                       self.usage(name, since, until))
                for name, a in sorted(dict(self._registry.apps).items())}
        return report(apps, model=self.model, since=since, until=until, by=by)

    def inventory_cost(self, app: str, cpu: float, now: float) -> dict:
        """The inventory's ``cost`` of one app: Skiff's cost over the last 30 days, per
        day and per 1,000 requests, with Lambda's and Cloud Run's per 1,000 beside it."""
        u = self.usage(app, now - INVENTORY_DAYS * 86400, now + 1)
        fig = app_cost(u, cpu=cpu, model=self.model, days=INVENTORY_DAYS)
        per_1k = fig["per_1k_requests"]
        return {"currency": self.model.currency, "window_days": INVENTORY_DAYS,
                "requests": u.requests, "gb_s": fig["gb_s"], "total": fig["cost"]["skiff"],
                "per_day": fig["per_day"]["skiff"],
                "per_1k_requests": per_1k["skiff"] if per_1k else None,
                "compare_per_1k_requests": {k: v for k, v in per_1k.items() if k != "skiff"}
                if per_1k else None}

    # -- budgets -------------------------------------------------------------------------
    def _used(self, b: Budget, since: float, until: float) -> float:
        total = 0.0
        for name, a in sorted(dict(self._registry.apps).items()):
            if (a.manifest.metadata.owner or "") != b.owner:
                continue
            u = self.usage(name, since, until)
            total += (u.requests if b.metric == "requests" else u.gb_s if b.metric == "gb_s"
                      else prices(u, cpu=a.manifest.spec.resources.cpu, model=self.model)[
                          "skiff"])
        return total

    def verdicts(self, now: float) -> list[Verdict]:
        """Every budget judged at ``now`` (blocking: storage); notices are not sent."""
        out = []
        for b in self.rows.list():
            start, _ = period(now)
            out.append(evaluate(self._used(b, start, now + 1), b, now,
                                self.rows.notified(b.id, start)))
        return out

    def evaluate(self, now: float) -> tuple[list[Verdict], list[dict]]:
        """Judge every budget at ``now``, send the notices due (once each), and work out
        what is in force by app. Blocking: run it off the loop. Returns the verdicts and
        the notices sent."""
        verdicts, sent = self.verdicts(now), []
        applied = Applied()
        for v in verdicts:
            if v.notify is not None and self.rows.claim(v.budget.id, v.period_start, v.notify):
                self._notice(v, now)
                sent.append({"budget": v.budget.id, "percent": v.notify,
                             "used": float(f"{v.used:.6g}"), "limit": v.budget.limit})
            if v.action is None:
                continue
            target = applied.throttled if v.action == "throttle" else applied.zeroed
            for name, a in dict(self._registry.apps).items():
                if (a.manifest.metadata.owner or "") == v.budget.owner:
                    target.setdefault(name, v)
        self.applied = applied
        self._verdicts = verdicts
        return verdicts, sent

    def use(self, app: str) -> float | None:
        """The share of its owner's budget ``app``'s owner has spent (1.0 = all; the
        largest over the owner's budgets) as of the last evaluation, or None without a
        budget: the alert rules' budget input. In memory."""
        a = self._registry.apps.get(app)
        owner = (a.manifest.metadata.owner or "") if a is not None else None
        shares = [v.percent / 100 for v in self._verdicts if v.budget.owner == owner]
        return max(shares) if shares else None

    def _notice(self, v: Verdict, now: float) -> None:
        b = v.budget
        what = {"throttle": "its apps answer 429 budget_exceeded until the month ends",
                "scale-to-zero": "its apps are scaled to zero and kept there until the "
                                 "month ends (requests still start instances)",
                "notify": "nothing is stopped"}[b.action]
        reached = v.notify == 100
        event = {"specversion": "1.0", "type": EVENT_TYPE, "source": EVENT_SOURCE,
                 "id": str(uuid.uuid4()), "subject": b.id,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                 "datacontenttype": "application/json",
                 "data": {"budget": b.id, "owner": b.owner, "metric": b.metric,
                          "limit": b.limit, "used": float(f"{v.used:.6g}"), "threshold": v.notify,
                          "percent": round(v.percent, 1), "action": b.action,
                          "enforced": reached and b.action != "notify",
                          "period_end": v.period_end}}
        subject = (f"Skiff budget {b.id} reached {v.notify} % "
                   f"({v.used:g} of {b.limit:g} {b.metric})")
        text = (f"The apps of {b.owner} used {v.used:g} of their monthly {b.metric} budget of "
                f"{b.limit:g} ({v.percent:.0f} %).\n"
                + (f"At 100 % {what}.\n" if reached else
                   f"At 100 %, {what}.\n")
                + f"Raise it with:  skiff budgets set {b.owner} --{b.metric.replace('_', '-')} N\n")
        self._lifecycle.notify(event, subject, text, now)

    # -- the hot path ------------------------------------------------------------------
    def throttled(self, app: str) -> BudgetExceeded | None:
        v = self.applied.throttled.get(app)
        return exceeded_error(app, v) if v is not None else None
