"""`skiff test DIR`: the app's own tests, then a throwaway Skiff with smoke and
contract checks (spec.checks) and latency gates that exit non-zero on a regression.
The gate arithmetic is table-tested; one real run covers the whole path."""

from __future__ import annotations

import pytest

from skiff.cli.apptest import Outcome, first_requests, latency_gates, p95, parse_ms
from skiff.errors import SkiffError
from tests.cliproc import run_inprocess


@pytest.mark.parametrize(("text", "ms"), [("50ms", 50.0), ("0.2s", 200.0), ("200", 200.0),
                                          ("1.5 s", 1500.0), (None, None)])
def test_durations(text, ms):
    assert parse_ms(text, "--max-p95") == ms


def test_bad_duration_says_how():
    with pytest.raises(SkiffError, match="give e.g. 50ms"):
        parse_ms("fast", "--max-p95")


@pytest.mark.parametrize(("values", "expect"), [
    ([], None), ([7.0], 7.0), (list(map(float, range(1, 21))), 19.0),
    (list(map(float, range(1, 101))), 95.0)])
def test_p95_nearest_rank(values, expect):
    assert p95(values) == expect


@pytest.mark.parametrize(("warm", "cold", "max_p95", "max_cold", "failed"), [
    (10.0, 30.0, 200.0, 50.0, []),
    (250.0, 30.0, 200.0, 50.0, ["warm p95"]),
    (10.0, 80.0, 200.0, 50.0, ["cold-start p95"]),
    (10.0, None, 200.0, 50.0, []),  # no sample: passes, and says so
    (900.0, 900.0, None, None, []),  # no gates asked for
])
def test_latency_gates(warm, cold, max_p95, max_cold, failed):
    out = Outcome()
    latency_gates(out, warm, cold, max_p95, max_cold)
    assert out.failed == failed
    if cold is None:
        assert "not measured" in out.lines[1][2]


def test_first_request_per_instance():
    rows = [{"seq": 3, "instance": "a", "id": "3", "init_ms": 0, "queued_ms": 1, "duration_ms": 5},
            {"seq": 1, "instance": "a", "id": "1", "init_ms": 20, "queued_ms": 2, "duration_ms": 8},
            {"seq": 2, "instance": "b", "id": "2", "init_ms": 0, "queued_ms": 0, "duration_ms": 4}]
    assert sorted(first_requests(rows)) == [4.0, 30.0]


def test_skiff_test_runs_the_apps_tests_then_gates_a_throwaway_skiff(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_inprocess(monkeypatch, "new", "gated", "-t", "static-site+api",
                                   "--no-git")
    assert status == 0, err
    manifest = tmp_path / "gated" / "skiff.yaml"
    # a contract the API breaks: ok must be false
    manifest.write_text(manifest.read_text().replace("{const: true}", "{const: false}"))
    status, out, err = run_inprocess(monkeypatch, "test", "gated", "--max-p95", "60s",
                                     "--requests", "5")
    text = " ".join(out.split())
    assert status == 1, out + err
    assert "app tests │ pass │ 2 passed" in text
    assert "GET / → 200" in text and "warm p95 │ pass" in text
    assert "GET /api/health → 200, body does not match its schema: False was expected" in text
    assert "[gate_failed] 1 gate(s) failed: check" in " ".join(err.split())


@pytest.mark.slow  # ~10 s: a throwaway Skiff; the served template test deploys it in CI
def test_the_workflow_template_passes_skiff_test(tmp_path, monkeypatch):
    """The state machine beside it (workflow/, kept out of the upload) does not get in the
    way: the app's tests validate the definition, the app deploys and answers."""
    monkeypatch.chdir(tmp_path)
    status, _, err = run_inprocess(monkeypatch, "new", "flow", "-t", "workflow", "--no-git")
    assert status == 0, err
    status, out, err = run_inprocess(monkeypatch, "test", "flow", "--requests", "3")
    text = " ".join(out.split())
    assert status == 0, out + err
    assert "app tests │ pass │ 3 passed" in text and "GET / → 200" in text
