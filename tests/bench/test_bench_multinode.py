"""The multinode benchmark stage runs end to end (quick): async on SQLite and
PostgreSQL against Dramatiq + Redis, HTTP through haproxy with one and two nodes,
failover after a kill -9. Slow and machine-dependent: only under ``-m slow``; it
asserts that the stage measures and reports, never on the numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("benchmark smoke test; run with -m slow")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_quick_multinode_stage_runs_and_reports(tmp_path: Path) -> None:
    results, markdown = tmp_path / "latest.json", tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "multinode",
         "--results", str(results), "--markdown", str(markdown)],
        cwd=ROOT, capture_output=True, text=True, timeout=1480)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(results.read_text())["stages"]["multinode"]["result"]
    names = {r["name"] for r in result["async"]["rows"]}
    assert {"skiff-sqlite", "skiff-postgresql", "dramatiq-redis-nofsync"} <= names
    assert [r["target"] for r in result["http"]["rows"]] == [
        "one node, direct", "haproxy, one node", "haproxy, two nodes"]
    assert result["failover"]["marked_down_s"] is not None
    assert "Failover" in result["markdown"]
