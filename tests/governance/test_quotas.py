"""Quotas per owner, pure: what a deploy would exceed given what runs, with the app
it replaces counted once and other owners' apps not at all."""

from __future__ import annotations

import pytest

from skiff.governance.quotas import Quota, QuotaExceeded, excess, refusal
from skiff.manifest import Manifest


def _app(name: str, owner: str = "user:alice", memory: int = 256, instances: int = 2) -> Manifest:
    return Manifest.model_validate({
        "apiVersion": "skiff.dev/v1", "kind": "MicroApp",
        "metadata": {"name": name, "owner": owner},
        "spec": {"handler": "handler.handler", "resources": {"memoryMB": memory},
                 "scaling": {"maxInstances": instances}}})


RUNNING = [_app("a"), _app("b"), _app("c", owner="user:bob", instances=50)]


@pytest.mark.parametrize(("quota", "new", "expected"), [
    (Quota(), _app("x", memory=4096, instances=100), []),  # no quota: nothing counted
    (Quota(apps=3), _app("x"), []),
    (Quota(apps=2), _app("x"), [("apps", 2, 2, 1)]),
    (Quota(apps=2), _app("a"), []),  # a redeploy of one of the two
    (Quota(apps=1), _app("x", owner="user:bob"), [("apps", 1, 1, 1)]),
    (Quota(memory_mb=512), _app("x", memory=512), []),
    (Quota(memory_mb=512), _app("x", memory=1024), [("memory_mb", 512, 0, 1024)]),
    (Quota(instances=6), _app("x", instances=2), []),
    (Quota(instances=6), _app("x", instances=3), [("instances", 6, 4, 3)]),
    (Quota(instances=6), _app("a", instances=4), []),  # replaces a's 2: 2 + 4
    (Quota(apps=2, memory_mb=128, instances=4), _app("x"),
     [("apps", 2, 2, 1), ("memory_mb", 128, 0, 256), ("instances", 4, 4, 2)]),
])
def test_what_a_deploy_would_exceed(quota: Quota, new: Manifest, expected: list) -> None:
    assert [(e.limit, e.quota, e.used, e.asked) for e in excess(quota, new, RUNNING)] == expected


def test_the_refusal_names_each_limit_and_the_use() -> None:
    new = _app("x", memory=1024, instances=3)
    err = refusal(new, excess(Quota(apps=2, memory_mb=512, instances=6), new, RUNNING))
    assert (err.status, err.code) == (422, "quota_exceeded")
    assert "user:alice runs 2 app(s) of a quota of 2" in err.message
    assert "resources.memoryMB 1024 is over the quota of 512 MB" in err.message
    assert "up to 4 instances; scaling.maxInstances 3 would make 7, over the quota of 6" \
        in err.message
    assert err.details["quotas"][0] == {"limit": "apps", "quota": 2, "used": 2, "asked": 1}


def test_the_governor_refuses_a_deploy_over_quota_or_holds_it_for_approval(tmp_path) -> None:  # noqa: ANN001
    """Without approvals: 422 quota_exceeded; with them: pending as quota:LIMIT, and
    once approved for the app it passes; the platform's own deploys are not counted."""
    from skiff.governance import Governor, Identities, Limits, Principal, Role
    from skiff.governance.approvals import Approvals, SQLiteApprovalRows
    from skiff.governance.audit import SQLiteAuditLog
    from skiff.governance.identity import SYSTEM_UP
    from skiff.governance.identity_rows import SQLiteIdentityRows

    db = tmp_path / "governance.db"
    rows, audit, approvals = SQLiteIdentityRows(db), SQLiteAuditLog(db), SQLiteApprovalRows(db)
    running = {m.name: ("rev", m) for m in RUNNING}
    alice = Principal("user:alice", Role.developer, user="alice", via="token")

    def governor(enabled: bool) -> Governor:
        return Governor(Identities(rows), audit, policy_dir=tmp_path / "policies",
                        limits=Limits(), secret_exists=lambda name: True,
                        running=lambda: running, quota=Quota(apps=2),
                        approvals=Approvals(approvals, enabled=enabled))

    try:
        Identities(rows).add_user("alice", [])
        with pytest.raises(QuotaExceeded) as over:
            governor(False).admit(_app("x"), actor=alice, current=None)
        assert over.value.details["quotas"] == [
            {"limit": "apps", "quota": 2, "used": 2, "asked": 1}]
        assert governor(False).admit(_app("a"), actor=alice, current=RUNNING[0]).verdict == \
            "allowed"  # a redeploy within it
        assert governor(False).admit(_app("x"), actor=SYSTEM_UP, current=None).verdict == \
            "allowed"
        held = governor(True).admit(_app("x"), actor=alice, current=None)
        assert (held.verdict, held.requested) == ("pending", ("quota:apps",))
        approvals.remember("x", ("quota:apps",), "user:olga", 0.0)
        assert governor(True).admit(_app("x"), actor=alice, current=None).verdict == "allowed"
    finally:
        for r in (rows, audit, approvals):
            r.close()
