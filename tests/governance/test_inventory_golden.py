"""Golden files of inventory rows: each inventory_golden/<case>.yaml (a manifest and the
facts the platform gathers about it) becomes exactly inventory_golden/<case>.json.
SKIFF_UPDATE_GOLDEN=1 rewrites the expected outputs from the current code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from skiff.governance.audit import AuditEntry
from skiff.governance.inventory import (
    MAX_RECORDS,
    app_row,
    draft_row,
    inventory,
    last_deploy,
    traffic,
)
from skiff.manifest import parse_manifest

GOLDEN = Path(__file__).parent / "inventory_golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.yaml"))
UPDATE = os.environ.get("SKIFF_UPDATE_GOLDEN") == "1"


def render(name: str) -> str:
    case = yaml.safe_load((GOLDEN / f"{name}.yaml").read_text())
    now = case["now"]
    manifest = parse_manifest(case["manifest"], source="golden", base_dir=GOLDEN)
    entries = [AuditEntry(target=manifest.name, **e) for e in case["audit"]]
    records = [{"ts": now - ago, "status": status} for ago, status in case["records"]]
    row = app_row(manifest, revision=case["revision"], lifecycle=case["lifecycle"],
                  deployed=last_deploy(entries), violations=case["violations"],
                  records=records, now=now)
    return json.dumps(row, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    expected = GOLDEN / f"{name}.json"
    got = render(name)
    if UPDATE:
        expected.write_text(got)
    assert got == expected.read_text()


def test_a_draft_gives_way_to_the_app_of_its_name() -> None:
    draft = {"name": "orders", "kind": "lambda", "path": "/r/orders/handler.py",
             "owner": "ann@example.com", "claimed_by": None}
    other = draft | {"name": "menu", "claimed_by": "user:bob"}
    app = {"app": "orders", "status": "running", "owner": None}
    out = inventory([app], [other, draft], [], 5.0)
    assert [(a["app"], a["status"], a["owner"]) for a in out["apps"]] == [
        ("orders", "running", None), ("menu", "draft", "user:bob")]
    assert draft_row(draft, 5.0)["owner"] == "ann@example.com"


def test_a_full_record_page_says_the_count_is_a_floor() -> None:
    records = [{"ts": 100.0, "status": 200}] * MAX_RECORDS
    assert traffic(records, 100.0)["requests_capped"]
    assert not traffic(records[:-1], 100.0)["requests_capped"]
