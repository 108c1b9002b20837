"""The benchmark harness runs end to end (quick cold-start stage only). Slow and
machine-dependent, so CI leaves it out (``-m "not slow"``); it asserts that the
harness works and reports, never on the numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    """Benchmarks stay out of the normal suite: run this only under ``-m slow``."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("benchmark smoke test; run with -m slow")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_coldstart_stage_runs_and_reports(tmp_path: Path) -> None:
    """`python -m bench --quick --only coldstart` measures Skiff and its peers and renders a report."""
    results, markdown = tmp_path / "latest.json", tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "coldstart",
         "--results", str(results), "--markdown", str(markdown)],
        cwd=ROOT, capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stage = json.loads(results.read_text())["stages"]["coldstart"]
    rows = {r["name"]: r for r in stage["result"]["rows"]}
    assert {"skiff", "fresh-python", "lambda-local", "functions-framework"} <= set(rows)
    assert all(r["client_ms"]["n"] > 0 for r in rows.values())
    assert rows["skiff"]["cold_recorded"] == rows["skiff"]["samples"]
    assert "## 1. Cold start" in markdown.read_text()
