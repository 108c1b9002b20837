"""The contract every AuditLog backend keeps: appended in order, filtered by app,
time and actor, the newest ``limit`` returned oldest first."""

from __future__ import annotations

from skiff.governance.audit import MAX_REASON_CHARS, AuditEntry, AuditLog


def test_append_and_query(audit_log: AuditLog) -> None:
    seqs = [audit_log.append(AuditEntry(actor=f"user:{who}", action="deploy", target=app,
                                        app=app, decision=decision, reason="r", ts=ts,
                                        details={"revision": f"r{ts:.0f}"}))
            for who, app, decision, ts in (("a", "x", "allowed", 10.0), ("b", "y", "denied", 20.0),
                                           ("a", "x", "allowed", 30.0))]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    every = audit_log.query()
    assert [(e.actor, e.target, e.ts) for e in every] == [
        ("user:a", "x", 10.0), ("user:b", "y", 20.0), ("user:a", "x", 30.0)]
    assert every[0].details == {"revision": "r10"} and every[1].decision == "denied"
    assert [e.ts for e in audit_log.query(app="x")] == [10.0, 30.0]
    assert [e.ts for e in audit_log.query(since=20.0)] == [20.0, 30.0]
    assert [e.ts for e in audit_log.query(actor="user:b")] == [20.0]
    assert [e.ts for e in audit_log.query(limit=2)] == [20.0, 30.0]


def test_entries_without_app_and_long_reasons(audit_log: AuditLog) -> None:
    """A token change names no app; a reason is kept up to its cap; now is the default time."""
    audit_log.append(AuditEntry(actor="admin", action="token.create", target="token:tok_1",
                                decision="allowed", reason="x" * (MAX_REASON_CHARS + 10)))
    (entry,) = audit_log.query()
    assert entry.app is None and len(entry.reason) == MAX_REASON_CHARS and entry.ts > 0
    assert audit_log.query(app="anything") == []
