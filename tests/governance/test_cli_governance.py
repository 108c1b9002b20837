"""`skiff policy test DIR` runs with no server; durations and times parse as documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from skiff.cli.governance import duration, since
from skiff.errors import SkiffError


def _app(root: Path, extra: str) -> Path:
    d = root / "app"
    (d / "public").mkdir(parents=True)
    (d / "public" / "index.html").write_text("hi")
    (d / "skiff.yaml").write_text("apiVersion: skiff.dev/v1\nkind: MicroApp\n"
                                  "metadata: {name: draft, owner: \"group:shop\", "
                                  "labels: {trust: untrusted}}\n"
                                  f"spec:\n  static: public\n{extra}")
    return d


def test_policy_test_runs_locally_and_exits_1_on_a_denial(tmp_path: Path) -> None:
    """No server: the built-in pack and the --policies directory are evaluated against the
    app, as JSON; a failing deny policy makes the exit code 1."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "label.yaml").write_text(
        "id: team-label\nenforcement: warn\nmessage: needs a team label\n"
        "expression: '\"team\" in input.manifest.metadata.labels'\n")
    app = _app(tmp_path, "  isolation: standard\n  ttlDays: 30\n")
    run = subprocess.run([sys.executable, "-m", "skiff", "policy", "test", str(app), "--json",
                          "--policies", str(policies), "--home", str(tmp_path / "home")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    result = json.loads(run.stdout)
    failing = {d["policy"]: d["enforcement"] for d in result["decisions"] if not d["allowed"]}
    assert failing == {"builtin.untrusted-strict": "deny", "team-label": "warn"}
    (app / "skiff.yaml").write_text((app / "skiff.yaml").read_text().replace(
        "isolation: standard", "isolation: strict"))
    run = subprocess.run([sys.executable, "-m", "skiff", "policy", "test", str(app),
                          "--policies", str(policies), "--home", str(tmp_path / "home")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "passes every deny policy" in run.stdout


def test_policy_test_names_a_broken_policy_file(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "bad.yaml").write_text("id: bad\nmessage: m\nexpression: input.app ==\n")
    run = subprocess.run([sys.executable, "-m", "skiff", "policy", "test",
                          str(_app(tmp_path, "")), "--policies", str(policies)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert f"{policies / 'bad.yaml'}:3:" in run.stderr.replace("\n", "")


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200),
                                               ("90m", 5400), ("2w", 14 * 86400)])
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


def test_bad_durations_and_times() -> None:
    for bad in ("30", "0d", "soon"):
        with pytest.raises(SkiffError):
            duration(bad)
    assert since("2h", now=10_000.0) == 10_000.0 - 7200
    assert since("2026-12-01T09:00:00+00:00") == 1796115600.0
    with pytest.raises(SkiffError) as err:
        since("yesterday")
    assert err.value.code == "bad_time"
