"""`skiff ls` fits the terminal: columns drop by priority (the name never does),
--wide shows all, a legend explains cold +p95 and churn/min. Table-tested on the
pure fitting, then once through the CLI at 80 and 100 columns."""

from __future__ import annotations

import pytest

from skiff.cli.listing import COLUMNS, fit, legend, row, table_width
from tests.cliproc import run_inprocess

APP = {"name": "inventory-sync-worker", "kind": "lambda", "revision": "r-3f9a1c2b7d4e",
       "instances": 2, "requests": 12345, "errors": 17, "p50_ms": 3.21, "p95_ms": 48.7,
       "p99_ms": 212.4, "cold_starts": 9, "cold_start_ratio": 0.07, "avg_init_ms": 141.0,
       "cold_start_added_p95_ms": 12.5, "churn_per_min": 0.4}


@pytest.mark.parametrize(("width", "headers"), [
    (40, ["app", "requests"]),
    (80, ["app", "requests", "p95 ms", "errors", "inst", "cold", "kind"]),
    (100, ["app", "requests", "p95 ms", "errors", "inst", "cold", "kind", "revision"]),
    (110, ["app", "requests", "p95 ms", "errors", "inst", "cold", "kind", "revision", "cold +p95"]),
    (140, [c.header for c in COLUMNS if c.header != "init ms"]),
])
def test_columns_drop_by_priority(width, headers):
    rows = [row(APP)]
    shown = fit(rows, width)
    assert [c.header for c in shown] == headers
    assert table_width([max(len(c.header), len(rows[0][c.header])) for c in shown]) <= width \
        or len(shown) == 1


def test_wide_keeps_all_and_the_name_is_never_dropped():
    rows = [row(APP)]
    assert fit(rows, 20, wide=True) == list(COLUMNS)
    assert [c.header for c in fit(rows, 5)] == ["app"]
    shown = fit(rows, 110)
    lines = legend(shown, len(COLUMNS) - len(shown))
    assert any(line.startswith("cold +p95: ") for line in lines)
    assert lines[-1].startswith("4 more column(s) hidden to fit; --wide shows all")


@pytest.mark.parametrize("columns", [80, 100])
def test_ls_fits_the_terminal(server, monkeypatch, admin_env, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    status, out, err = run_inprocess(monkeypatch, "ls", env=admin_env, columns=columns)
    assert status == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    [hello] = [line for line in lines if "│ hello " in line]
    assert "p95 ms" in out and ("cold +p95: " in out) == (columns >= 100)
    assert "--wide shows all" in out and hello
    status, wide, _ = run_inprocess(monkeypatch, "ls", "--wide", env=admin_env, columns=columns)
    assert status == 0 and "churn/min" in wide and "init ms" in wide
