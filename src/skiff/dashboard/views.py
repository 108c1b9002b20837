"""What the pages show, computed from admin API answers: sorting, bucketing and
picking out an app's own queues and secrets. Pure functions (no I/O), so the
tests can table-check them and the templates stay free of arithmetic.

The charts are fed by invocation records today (the newest ``RECORDS`` of them,
what the admin API lists). When skiff.observe's metrics arrive, a function here
that turns a metrics answer into the same ``Series`` shape is the only change:
the browser draws whatever series it is given.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

#: invocation records one app page fetches (the API's cap is 1,000; 500 keeps an app
#: page under ~100 ms to build and covers minutes of traffic at a busy app's rate)
RECORDS = 500
#: records per app the overview reads for its request rate (one query per app)
RATE_RECORDS = 200
#: apps whose request rate the overview measures (the worst first): one records query
#: each, so a home with thousands of apps still answers in well under a second; the
#: rest show no rate until observe's metrics feed it (no per-app query then)
RATE_APPS = 200
#: the window the overview's request rate is measured over
RATE_WINDOW_S = 300
#: at most this many points per chart: enough to see a spike at phone width too
MAX_BUCKETS = 60
#: bucket widths the charts snap to (seconds), so axes read as round numbers
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
#: the line colours of the charts (the tests look for these pixels on the canvas)
COLOURS = {"p50": "#2b7bb9", "p95": "#e08a00", "p99": "#c0392b", "requests": "#2b7bb9",
           "errors": "#c0392b", "cold": "#7d3c98"}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted ``values`` (None when there are none)."""
    if not values:
        return None
    rank = max(1, math.ceil(q / 100 * len(values)))
    return round(values[rank - 1], 2)


#: the overview's cost column: Skiff's cost per 1,000 requests over these days
COST_DAYS = 30


def cost_per_1k(report: dict) -> dict[str, float | None]:
    """App -> Skiff's cost per 1,000 requests, of a ``GET /cost`` answer (by app)."""
    return {r["app"]: (r["per_1k_requests"] or {}).get("skiff") for r in report["rows"]}


def overview(apps: list[dict], records: dict[str, list[dict]],
             now: float | None = None, costs: dict[str, float | None] | None = None) -> list[dict]:
    """One row per app, the worst first: highest error share, then slowest p95."""
    now = time.time() if now is None else now
    rows = []
    for app in apps:
        recent = [r for r in records.get(app["name"], []) if r["ts"] >= now - RATE_WINDOW_S]
        requests = app.get("requests", 0)
        measured = app["name"] in records
        rows.append(app | {
            "rate_per_min": round(len(recent) * 60 / RATE_WINDOW_S, 2) if measured else None,
            "error_share": round(app.get("errors", 0) / requests, 4) if requests else 0.0,
            "cost_per_1k": (costs or {}).get(app["name"]),
        })
    rows.sort(key=worst_first)
    return rows


def worst_first(app: dict) -> tuple:
    requests = app.get("requests", 0)
    share = app.get("errors", 0) / requests if requests else 0.0
    return (-share, -(app.get("p95_ms") or 0), app["name"])


def bucket_width(span_s: float) -> int:
    for step in _STEPS:
        if span_s / step <= MAX_BUCKETS:
            return step
    return _STEPS[-1]


def series(records: Iterable[dict]) -> dict[str, Any]:
    """Charts of invocation records: per time bucket, the requests, errors and cold
    starts, and the p50/p95/p99 duration. The shape the browser draws::

        {"step": seconds, "x": [unix seconds...],
         "charts": [{"id", "title", "unit", "series": [{"label", "colour", "values"}]}]}
    """
    recs = sorted(records, key=lambda r: r["ts"])
    if not recs:
        return {"step": 0, "x": [], "charts": []}
    start, end = recs[0]["ts"], recs[-1]["ts"]
    step = bucket_width(end - start)
    first = math.floor(start / step) * step
    n = int((end - first) // step) + 1
    durations: list[list[float]] = [[] for _ in range(n)]
    errors = [0] * n
    cold = [0] * n
    for r in recs:
        i = int((r["ts"] - first) // step)
        durations[i].append(r["duration_ms"])
        errors[i] += r["status"] >= 500
        cold[i] += bool(r["cold"])
    for d in durations:
        d.sort()

    def line(label: str, values: list) -> dict:
        return {"label": label, "colour": COLOURS[label], "values": values}

    return {
        "step": step, "x": [first + i * step for i in range(n)],
        "charts": [
            {"id": "latency", "title": "Duration", "unit": "ms", "series": [
                line(q, [percentile(d, int(q[1:])) for d in durations])
                for q in ("p50", "p95", "p99")]},
            {"id": "rate", "title": f"Invocations per {step} s", "unit": "", "series": [
                line("requests", [len(d) for d in durations]),
                line("errors", errors), line("cold", cold)]},
        ],
    }


def app_queues(manifest: dict, app: str, queues: list[dict]) -> list[dict]:
    """The queues an app declares or triggers on, its async and event dead-letter
    queues, and their DLQs; each marked ``is_dlq`` when another queue dead-letters
    into it (those get peek and redrive)."""
    spec = manifest.get("spec") or {}
    names = {f"{app}-dlq", f"{app}-events-dlq"}
    names.update(q["name"] for q in spec.get("queues") or [] if q.get("name"))
    names.update(t["queue"] for t in spec.get("triggers") or [] if t.get("queue"))
    dlqs = {q["dead_letter_queue"] for q in queues if q.get("dead_letter_queue")}
    names.update(q["dead_letter_queue"] for q in queues
                 if q["name"] in names and q.get("dead_letter_queue"))
    return [q | {"is_dlq": q["name"] in dlqs or q["name"] in (f"{app}-dlq", f"{app}-events-dlq")}
            for q in queues if q["name"] in names]


def app_secrets(manifest: dict, stored: list[dict]) -> list[dict]:
    """The secret refs the manifest declares with the store's version of each (never a
    value: the API has none to give)."""
    versions = {s["name"]: s for s in stored}
    out = []
    for s in (manifest.get("spec") or {}).get("secrets") or []:
        ref = s.get("ref", "")
        name = ref.removeprefix("secret://")
        known = versions.get(name)
        out.append({"env": s.get("name"), "ref": ref, "stored": known is not None,
                    "version": known["version"] if known else None,
                    "updated": known["updated"] if known else None})
    return out


#: an app whose TTL runs out within this many days is marked on the inventory (the
#: lifecycle's first reminder goes out a week before, too)
RENEW_SOON_DAYS = 7


def inventory_rows(apps: list[dict]) -> list[dict]:
    """The inventory's rows, each with ``attention``: its policy denies, or its TTL runs
    out within RENEW_SOON_DAYS (renew it, or it is archived)."""
    def attention(a: dict) -> bool:
        left = a.get("ttl_left_days")
        return (a.get("policy") or {}).get("status") == "deny" or (
            left is not None and left < RENEW_SOON_DAYS)
    return [a | {"attention": attention(a)} for a in apps]


def budgets_order(budgets: list[dict]) -> list[dict]:
    """The fullest budget first (the one about to act), then by owner and metric."""
    return sorted(budgets, key=lambda b: (-b["percent"], b["owner"], b["metric"]))


def archives_order(archives: list[dict]) -> list[dict]:
    """The newest archive first."""
    return sorted(archives, key=lambda a: (-a["archived"], a["app"]))


#: executions the workflows page lists (the newest; the API's cap is 1,000)
EXECUTIONS = 50


def trigger_text(trigger: dict) -> str:
    """One trigger of a machine as its kind and target: ``http POST /checkout``,
    ``queue shop-inbox``, ``event {"type": ["shop.order"]}``."""
    if "http" in trigger:
        http = trigger["http"] or {}
        return f"http {','.join(http.get('methods') or ['POST'])} {http.get('path', '')}"
    if "queue" in trigger:
        return f"queue {trigger['queue']}"
    (kind, value), *_ = trigger.items() or [("?", "")]
    return f"{kind} {json.dumps(value, sort_keys=True, separators=(', ', ': '))}"


def state_bars(states: list[dict]) -> list[dict]:
    """Each state visit of an execution with ``share``: its duration as a percentage of
    the longest one (0-100, what the bar draws), in the order the states were entered.
    A visit without a duration (still running) has share 0."""
    longest = max((s["duration_ms"] or 0 for s in states), default=0)
    return [s | {"share": round(100 * (s["duration_ms"] or 0) / longest, 1) if longest else 0.0}
            for s in states]


def pretty(value: Any) -> str:
    """An execution's input or output as indented JSON, as the machine saw it."""
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False)
