"""Golden files of policy evaluation: each golden/<case>.yaml (policies, or the
built-in pack, and an input, or a manifest with the facts around it) evaluates
to golden/<case>.json, or fails to load with exactly golden/<case>.err.
SKIFF_UPDATE_GOLDEN=1 rewrites the expected outputs from the current code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from skiff.governance import BOOTSTRAP, Audit, Limits, PolicyError, evaluate, policy_input
from skiff.governance.advisories import Advisory
from skiff.governance.policy import builtin_policies, parse_policies
from skiff.manifest import parse_manifest

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.yaml"))
UPDATE = os.environ.get("SKIFF_UPDATE_GOLDEN") == "1"


def case_input(case: dict) -> dict:
    if "input" in case:
        return case["input"]
    facts = case.get("facts", {})
    manifest = parse_manifest(case["manifest"], source="golden", base_dir=GOLDEN)
    return policy_input(
        manifest, owner_known=facts.get("owner_known", False), owner_groups=[], actor=BOOTSTRAP,
        identities_enabled=facts.get("identities_enabled", False),
        findings=facts.get("findings", []), findings_allowed=False,
        secret_exists=lambda name: name in facts.get("secrets", []),
        limits=Limits(approved_hosts=tuple(facts.get("approved_hosts", ())),
                      approved_templates=tuple(facts.get("approved_templates", ()))),
        dependencies=audit_of(facts.get("dependencies")))


def audit_of(facts: dict | None) -> Audit:
    """The dependency audit a case states: its status and advisories."""
    if facts is None:
        return Audit("none")
    found = tuple(Advisory(a["package"], a["version"], a["id"], a.get("summary", ""),
                           a["severity"], fixed=tuple(a.get("fixed", ())))
                  for a in facts.get("advisories", ()))
    return Audit(facts["status"], tuple((a.package, a.version) for a in found), found,
                 facts.get("error", ""))


def render(name: str) -> tuple[str, str]:
    text = (GOLDEN / f"{name}.yaml").read_text()
    case = yaml.safe_load(text)
    try:
        if case.get("builtin"):
            policies = builtin_policies()
        else:  # the policies as a file of their own: lines count from the case file's
            policies = parse_policies(text.split("\ninput:")[0], source=f"{name}.yaml")
    except PolicyError as exc:
        return ".err", exc.message + "\n"
    decisions = [d.to_dict() for d in evaluate(policies, case_input(case))]
    return ".json", json.dumps(decisions, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    """A case evaluates to its recorded decisions (or load error), byte for byte."""
    suffix, actual = render(case)
    expected_file = GOLDEN / f"{case}{suffix}"
    other = GOLDEN / f"{case}{'.json' if suffix == '.err' else '.err'}"
    if UPDATE:
        expected_file.write_text(actual)
        other.unlink(missing_ok=True)
        return
    assert not other.exists(), f"{case} was expected to give {other.suffix}"
    assert actual == expected_file.read_text()


def test_evaluate_is_pure() -> None:
    """The same policies and input give the same decisions, and the input is not changed."""
    policies = builtin_policies()
    case = yaml.safe_load((GOLDEN / "builtin_violations.yaml").read_text())
    given = case_input(case)
    snapshot = json.dumps(given, sort_keys=True)
    assert evaluate(policies, given) == evaluate(policies, given)
    assert json.dumps(given, sort_keys=True) == snapshot
