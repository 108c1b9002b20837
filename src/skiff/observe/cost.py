"""What apps cost: Skiff's own cost on the machine it runs on, and what the same
invocations would cost on AWS Lambda and Cloud Run, per app and per owner.

The model is data (``cost_model.yaml`` beside this module, keys overridden by
``$SKIFF_HOME/cost.yaml`` or the file ``SKIFF_COST_MODEL`` names, the machine
prices by ``SKIFF_COST_CORE_HOUR`` / ``SKIFF_COST_GIB_HOUR``); the arithmetic is
pure: :func:`usage` folds invocation records into a :class:`Usage` (the stores
compute the same sums in SQL, ``InvocationLog.usage``), :func:`app_cost` prices
one app's usage, :func:`by_owner` adds apps up. Golden-tested in
tests/observe/test_cost.py.

How each is charged, per invocation:

- Lambda: requests x rate, plus memoryMB/1024 x (billed duration + INIT) GB-s
  (INIT is billed since August 2025); x86_64 and arm64.
- Cloud Run (request-based billing): requests x rate, plus cpu x time vCPU-s and
  memoryMB/1024 x time GiB-s, time rounded up to 100 ms per request.
- Skiff: cpu cores x time at the core-hour price, plus the larger of the memory
  reserved (memoryMB x time) and the memory used x time at the GiB-hour price.
  Records carry the reserved memoryMB; a record that carries a measured
  ``used_mb`` is charged by the larger of the two.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from skiff.errors import SkiffError

MODEL_FILE = Path(__file__).with_name("cost_model.yaml")
OVERRIDE_FILE = "cost.yaml"  # under $SKIFF_HOME
PRICES = ("skiff", "lambda_x86", "lambda_arm", "cloud_run")
_DIGITS = 6  # significant: a tiny app costs millionths of a dollar, a busy one hundreds


def _round(value: float) -> float:
    return float(f"{value:.{_DIGITS}g}")


@dataclass(frozen=True)
class CostModel:
    currency: str
    lambda_per_million: float
    lambda_gb_s_x86: float
    lambda_gb_s_arm: float
    lambda_init_billed: bool
    run_per_million: float
    run_vcpu_s: float
    run_gib_s: float
    run_step_ms: int
    core_hour: float
    gib_hour: float
    sources: tuple[tuple[str, str, str], ...] = ()  # (what, url, retrieved)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"} | {
            "sources": [{"for": w, "source": u, "retrieved": r} for w, u, r in self.sources]}


def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(
            out.get(k), Mapping) else v
    return out


def parse_model(data: Mapping[str, Any], where: str = "the cost model") -> CostModel:
    """A :class:`CostModel` of the YAML's mapping; a missing or non-numeric rate is a
    ``bad_config`` error naming the key."""
    def num(section: str, *keys: str) -> float:
        value: Any = data.get(section, {})
        for k in keys:
            value = value.get(k) if isinstance(value, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
                or not math.isfinite(value):
            raise SkiffError(f"{where}: {section}.{'.'.join(keys)} must be a number >= 0, got "
                             f"{value!r}", code="bad_config", status=500)
        return float(value)

    lam, run = data.get("lambda", {}), data.get("cloud_run", {})
    return CostModel(
        currency=str(data.get("currency", "USD")),
        lambda_per_million=num("lambda", "per_million_requests"),
        lambda_gb_s_x86=num("lambda", "per_gb_second", "x86_64"),
        lambda_gb_s_arm=num("lambda", "per_gb_second", "arm64"),
        lambda_init_billed=bool(lam.get("init_billed", True)),
        run_per_million=num("cloud_run", "per_million_requests"),
        run_vcpu_s=num("cloud_run", "per_vcpu_second"),
        run_gib_s=num("cloud_run", "per_gib_second"),
        run_step_ms=max(1, int(run.get("billing_step_ms", 100))),
        core_hour=num("skiff", "core_hour"),
        gib_hour=num("skiff", "gib_hour"),
        sources=tuple((name, " ".join(str(data[name].get("source", "")).split()),
                       str(data[name].get("retrieved", "")))
                      for name in ("lambda", "cloud_run", "skiff")
                      if isinstance(data.get(name), Mapping)))


def load_model(home: Path | None = None, *, core_hour: float | None = None,
               gib_hour: float | None = None) -> CostModel:
    """The packaged model, with ``$SKIFF_HOME/cost.yaml`` (or ``$SKIFF_COST_MODEL``)
    over it, and the machine prices given."""
    data = yaml.safe_load(MODEL_FILE.read_text())
    override = os.environ.get("SKIFF_COST_MODEL") or (
        str(home / OVERRIDE_FILE) if home is not None else "")
    where = "the cost model"
    if override and Path(override).is_file():
        where = override
        try:
            extra = yaml.safe_load(Path(override).read_text()) or {}
        except yaml.YAMLError as exc:
            raise SkiffError(f"{override}: not YAML: {exc}", code="bad_config",
                             status=500) from None
        if not isinstance(extra, Mapping):
            raise SkiffError(f"{override}: must be a mapping like {MODEL_FILE.name}",
                             code="bad_config", status=500)
        data = _merge(data, extra)
    for key, value in (("core_hour", core_hour), ("gib_hour", gib_hour)):
        if value is not None:
            data["skiff"] = dict(data.get("skiff", {})) | {key: value}
    return parse_model(data, where)


@dataclass(frozen=True)
class Usage:
    """Sums over one app's invocation records (milliseconds; memory in MB)."""

    requests: int = 0
    errors: int = 0  # status >= 500
    cold: int = 0
    billed_ms: float = 0.0  # duration, rounded up to 1 ms per invocation (Lambda's step)
    init_ms: float = 0.0  # INIT of cold starts
    mb_ms: float = 0.0  # reserved memoryMB x billed_ms
    mb_init_ms: float = 0.0  # reserved memoryMB x init_ms
    step_ms: float = 0.0  # duration + init, rounded up to 100 ms per invocation (Cloud Run)
    mb_step_ms: float = 0.0  # reserved memoryMB x step_ms
    used_mb_ms: float = 0.0  # measured memory x (billed + init), where records carry it

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def gb_s(self) -> float:
        """Lambda's GB-seconds, INIT included."""
        return (self.mb_ms + self.mb_init_ms) / 1024 / 1000


def step(ms: float, step_ms: int) -> float:
    """``ms`` rounded up to a whole number of ``step_ms`` (at least one step)."""
    return max(1, math.ceil(ms / step_ms - 1e-9)) * step_ms


def usage(records: Iterable[Mapping[str, Any]], step_ms: int = 100) -> Usage:
    """The sums of ``records`` (rows of ``InvocationLog.invocations``)."""
    total = Usage()
    for r in records:
        mb = float(r["memory_mb"])
        billed = float(r.get("billed_ms") or max(1, math.ceil(r["duration_ms"])))
        init = float(r.get("init_ms") or 0.0)
        ran = step(billed + init, step_ms)
        used = float(r.get("used_mb") or 0.0)
        total = total + Usage(1, int(r["status"] >= 500), int(bool(r.get("cold"))), billed,
                              init, mb * billed, mb * init, ran, mb * ran,
                              used * (billed + init))
    return total


def prices(u: Usage, *, cpu: float, model: CostModel) -> dict[str, float]:
    """What ``u`` costs on Skiff and would cost on Lambda and Cloud Run."""
    lam_gb_s = (u.mb_ms + (u.mb_init_ms if model.lambda_init_billed else 0.0)) / 1024 / 1000
    lam_req = u.requests * model.lambda_per_million / 1e6
    run = (u.requests * model.run_per_million / 1e6
           + cpu * u.step_ms / 1000 * model.run_vcpu_s
           + u.mb_step_ms / 1024 / 1000 * model.run_gib_s)
    ran_s = (u.billed_ms + u.init_ms) / 1000
    gib_s = max(u.mb_ms + u.mb_init_ms, u.used_mb_ms) / 1024 / 1000
    skiff = cpu * ran_s / 3600 * model.core_hour + gib_s / 3600 * model.gib_hour
    return {"skiff": skiff, "lambda_x86": lam_req + lam_gb_s * model.lambda_gb_s_x86,
            "lambda_arm": lam_req + lam_gb_s * model.lambda_gb_s_arm, "cloud_run": run}


def _figures(u: Usage, cost: dict[str, float], days: float) -> dict[str, Any]:
    return {
        "requests": u.requests, "errors": u.errors, "cold_starts": u.cold,
        "gb_s": round(u.gb_s, 6),
        "cost": {k: _round(v) for k, v in cost.items()},
        "per_day": {k: _round(v / days) for k, v in cost.items()} if days > 0 else None,
        "per_1k_requests": ({k: _round(v / u.requests * 1000) for k, v in cost.items()}
                            if u.requests else None),
    }


def app_cost(u: Usage, *, cpu: float, model: CostModel, days: float) -> dict[str, Any]:
    """One app's figures over a window of ``days``: requests, GB-s, the cost of each
    platform, per day and per 1,000 requests (None without requests)."""
    return _figures(u, prices(u, cpu=cpu, model=model), days)


def report(apps: Mapping[str, tuple[str, float, Usage]], *, model: CostModel, since: float,
           until: float, by: str = "app") -> dict[str, Any]:
    """The answer of ``GET /cost``: ``apps`` is name -> (owner, cpu, usage) over
    [``since``, ``until``]; ``by`` "app" or "owner" (owners' apps added up)."""
    if by not in ("app", "owner"):
        raise SkiffError(f"by must be app or owner, not {by!r}", code="bad_request", status=400)
    days = max(until - since, 0.0) / 86400
    rows: list[dict[str, Any]] = []
    if by == "app":
        for name, (owner, cpu, u) in sorted(apps.items()):
            rows.append({"app": name, "owner": owner or None}
                        | app_cost(u, cpu=cpu, model=model, days=days))
    else:
        for owner, (names, u, cost) in sorted(by_owner(apps, model).items()):
            rows.append({"owner": owner or None, "apps": names} | _figures(u, cost, days))
    return {"by": by, "since": since, "until": until, "days": round(days, 4),
            "currency": model.currency, "rows": rows, "model": model.to_dict()}


def by_owner(apps: Mapping[str, tuple[str, float, Usage]],
             model: CostModel) -> dict[str, tuple[list[str], Usage, dict[str, float]]]:
    """Each owner's apps, their usage added up, and their cost (priced app by app:
    apps differ in cpu)."""
    out: dict[str, tuple[list[str], Usage, dict[str, float]]] = {}
    for name, (owner, cpu, u) in sorted(apps.items()):
        names, total, cost = out.get(owner or "", ([], Usage(), dict.fromkeys(PRICES, 0.0)))
        one = prices(u, cpu=cpu, model=model)
        out[owner or ""] = ([*names, name], total + u,
                            {k: cost[k] + one[k] for k in PRICES})
    return out
