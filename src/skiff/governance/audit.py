"""The audit trail: every mutating admin action, appended, never updated.

One entry says who (``actor``: ``user:NAME``, ``token:ID``, ``admin`` for the
bootstrap token, ``oidc:SUB``, ``system:up`` for ``skiff up DIRS``, ``local:USER``
for ``skiff secrets`` run on the node), when, what (``action``: deploy, rollback,
delete, owner.change, secret.set, secret.rotate, secret.delete, policy.apply,
policy.rm, token.create, token.revoke, user.add, user.rm, group.add, signin.oidc,
kv.put, queue.purge, queue.redrive, route.grant, route.revoke, instances.stop, archive
and restore and renew and lifecycle.sweep (skiff.governance.lifecycle; ``system:lifecycle``
archives what expired), approval.approve, approval.deny; a deploy held for approval is
recorded with the decision ``pending``),
on what (``target``, and ``app`` when it is an app's), the
decision (``allowed``, ``denied``, ``failed``) and why (the error code and
message of a refusal, or what changed). Values of secrets never appear. Only
authenticated callers write entries (a refused sign-in is not one), so the
trail grows with what people do, not with what anyone sends.

:class:`SQLiteAuditLog` (the ``gov_audit`` table of ``governance.db``) and
:class:`skiff.governance.audit_postgres.PostgresAuditLog`;
tests/governance/test_audit_contract.py is the contract of both.
"""

from __future__ import annotations

import abc
import json
import os
import time
from dataclasses import dataclass, field

from skiff.governance.identity_rows import SQLiteFile

#: reasons are what a person reads; a refusal's message fits, a flood does not
MAX_REASON_CHARS = 2000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str
    target: str
    decision: str
    reason: str = ""
    app: str | None = None
    details: dict = field(default_factory=dict)
    ts: float = 0.0  # 0: now, when appended
    seq: int = 0  # given by the log

    def to_dict(self) -> dict:
        return {"seq": self.seq, "ts": self.ts, "actor": self.actor, "action": self.action,
                "target": self.target, "app": self.app, "decision": self.decision,
                "reason": self.reason, "details": self.details}


class AuditLog(abc.ABC):
    def append(self, entry: AuditEntry) -> int:
        """Store ``entry`` (stamped now unless it has a time); return its sequence number."""
        ts = entry.ts or time.time()
        return self._append(ts, entry.actor, entry.action, entry.target, entry.app,
                            entry.decision, entry.reason[:MAX_REASON_CHARS],
                            json.dumps(entry.details, sort_keys=True, default=str))

    def query(self, *, app: str | None = None, since: float | None = None,
              actor: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Entries oldest first, filtered; at most the newest ``limit`` of them."""
        rows = self._query(app, since, actor, limit)
        return [AuditEntry(actor=r[2], action=r[3], target=r[4], app=r[5], decision=r[6],
                           reason=r[7], details=json.loads(r[8]), ts=r[1], seq=r[0])
                for r in reversed(rows)]

    @abc.abstractmethod
    def _append(self, ts: float, actor: str, action: str, target: str, app: str | None,
                decision: str, reason: str, details: str) -> int: ...

    @abc.abstractmethod
    def _query(self, app: str | None, since: float | None, actor: str | None,
               limit: int) -> list[tuple]:
        """(seq, ts, actor, action, target, app, decision, reason, details) rows,
        newest first."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


class SQLiteAuditLog(AuditLog):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._f = SQLiteFile(path)

    def _append(self, ts: float, actor: str, action: str, target: str, app: str | None,
                decision: str, reason: str, details: str) -> int:
        return self._f.write(lambda db: db.execute(  # type: ignore[return-value]
            "INSERT INTO gov_audit (ts, actor, action, target, app, decision, reason, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ts, actor, action, target, app, decision, reason, details)).lastrowid)

    def _query(self, app: str | None, since: float | None, actor: str | None,
               limit: int) -> list[tuple]:
        return self._f.read(
            "SELECT seq, ts, actor, action, target, app, decision, reason, details "
            "FROM gov_audit WHERE (? IS NULL OR app = ?) AND (? IS NULL OR ts >= ?) "
            "AND (? IS NULL OR actor = ?) ORDER BY seq DESC LIMIT ?",
            (app, app, since, since, actor, actor, limit))

    def close(self) -> None:
        self._f.close()

