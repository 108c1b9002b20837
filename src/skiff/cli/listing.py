"""`skiff ls` in the width there is: columns drop by priority until the table fits
(the app's name never does), `--wide` keeps every one, and a legend explains the two
figures whose headers cannot (cold +p95, churn/min).

The widths are rich's for a table with borders: each column is its widest cell plus
a space either side plus one border, and one more border closes the row."""

from __future__ import annotations

import shutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    header: str
    priority: int  # 0 stays longest; the highest number drops first
    legend: str = ""


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


COLUMNS = (
    Column("app", 0),
    Column("requests", 1),
    Column("p95 ms", 1),
    Column("errors", 2),
    Column("inst", 2, "inst: instances running now"),
    Column("cold", 3, "cold: cold starts (share of requests)"),
    Column("kind", 4),
    Column("revision", 5),
    Column("cold +p95", 6, "cold +p95: ms that cold starts add to p95 latency"),
    Column("p50 ms", 7),
    Column("p99 ms", 8),
    Column("churn/min", 9, "churn/min: instances started per minute (scale-up churn)"),
    Column("init ms", 10, "init ms: average init time of a cold start"),
)


def row(a: dict) -> dict[str, str]:
    """One app of ``GET /apps`` as the cells of every column."""
    return {"app": a["name"], "kind": a["kind"] or "", "revision": a["revision"],
            "inst": str(a["instances"]), "requests": str(a["requests"]),
            "errors": str(a["errors"]), "p50 ms": _ms(a["p50_ms"]), "p95 ms": _ms(a["p95_ms"]),
            "p99 ms": _ms(a["p99_ms"]),
            "cold": f"{a['cold_starts']} ({a['cold_start_ratio']:.0%})",
            "init ms": _ms(a["avg_init_ms"] or None),
            "cold +p95": _ms(a["cold_start_added_p95_ms"]), "churn/min": str(a["churn_per_min"])}


def table_width(widths: list[int]) -> int:
    return sum(w + 3 for w in widths) + 1


def fit(rows: list[dict[str, str]], width: int, *, wide: bool = False) -> list[Column]:
    """The columns to show, in display order: all of them when ``wide``, else those of
    the highest priority whose table fits ``width``."""
    def need(c: Column) -> int:
        return max([len(c.header)] + [len(r[c.header]) for r in rows])

    shown = list(COLUMNS)
    if wide:
        return shown
    while len(shown) > 1 and table_width([need(c) for c in shown]) > width:
        shown.remove(max(shown[1:], key=lambda c: (c.priority, COLUMNS.index(c))))
    return shown


def legend(shown: list[Column], hidden: int) -> list[str]:
    lines = [c.legend for c in shown if c.legend]
    if hidden:
        lines.append(f"{hidden} more column(s) hidden to fit; --wide shows all, --json every figure")
    return lines


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 80 (piped output, CI logs)."""
    return shutil.get_terminal_size((80, 24)).columns
