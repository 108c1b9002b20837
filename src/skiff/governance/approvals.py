"""Approvals for elevated scopes: a deploy that asks for more than the app had (a
new egress host, a new secret ref, weaker isolation, a new host route) is held as
*pending* while the previous revision keeps serving, until an operator who is
not its author approves or denies it. Approved scopes are remembered per app, so
the same scopes need no new approval.

On when ``SKIFF_APPROVALS=1`` and identities are enabled (with only the bootstrap
token there is nobody else to approve); deploys by the platform itself (``skiff
up DIRS``) are not held. :func:`scopes` and :func:`requested` are pure.

    403 self_approval     the author of a request may not decide it
    404 approval_not_found
    409 approval_decided  it was approved or denied already
"""

from __future__ import annotations

import abc
import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any

from skiff.errors import Conflict, Forbidden, NotFound
from skiff.governance.identity import Principal, Role
from skiff.governance.identity_rows import SQLiteFile
from skiff.governance.secrets import parse_ref
from skiff.manifest import Manifest

_WEAKER = {"strict": 0, "standard": 1, "none": 2}


def scopes(manifest: Manifest | None) -> set[str]:
    """What a manifest asks of the platform beyond the defaults, as scope strings."""
    if manifest is None:
        return set()
    spec = manifest.spec
    out = {f"egress:{e}" for e in spec.egress}
    for s in spec.secrets:
        try:
            out.add(f"secret:{parse_ref(s.ref)[0]}")
        except Exception:  # noqa: BLE001 - a bad ref fails the deploy elsewhere
            out.add(f"secret:{s.ref}")
    level = _WEAKER.get(spec.isolation, 0)
    out |= {f"isolation:{name}" for name, rank in _WEAKER.items() if 0 < rank <= level}
    out |= {f"route:{r.host.lower()}" for r in spec.routes if r.host}
    return out


def requested(new: Manifest, current: Manifest | None, approved: set[str]) -> list[str]:
    """The scopes ``new`` asks for that the app neither had nor was approved for."""
    return sorted(scopes(new) - scopes(current) - approved)


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    id: str
    app: str
    requester: str
    scopes: tuple[str, ...]
    created: float
    state: str  # pending, approved, denied
    decided_by: str | None
    decided: float | None
    reason: str
    source: str  # the held upload's directory

    def to_dict(self) -> dict:
        return {"id": self.id, "app": self.app, "requester": self.requester,
                "scopes": list(self.scopes), "created": self.created, "state": self.state,
                "decided_by": self.decided_by, "decided": self.decided, "reason": self.reason}


class ApprovalRows(abc.ABC):
    @abc.abstractmethod
    def add(self, row: ApprovalRow) -> None: ...

    @abc.abstractmethod
    def get(self, id: str) -> ApprovalRow | None: ...

    @abc.abstractmethod
    def list(self, state: str | None) -> list[ApprovalRow]: ...

    @abc.abstractmethod
    def decide(self, id: str, state: str, by: str, now: float, reason: str) -> bool:
        """pending -> ``state``; False when it is not pending (any more)."""

    @abc.abstractmethod
    def remember(self, app: str, scopes: tuple[str, ...], by: str, now: float) -> None: ...

    @abc.abstractmethod
    def approved(self, app: str) -> set[str]: ...

    @abc.abstractmethod
    def forget(self, app: str) -> None:
        """The app is deleted: a later app of its name starts with no approved scopes."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS gov_approvals (
  id TEXT PRIMARY KEY, app TEXT NOT NULL, requester TEXT NOT NULL, scopes TEXT NOT NULL,
  created REAL NOT NULL, state TEXT NOT NULL, decided_by TEXT, decided REAL,
  reason TEXT NOT NULL, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gov_approved_scopes (
  app TEXT NOT NULL, scope TEXT NOT NULL, approved_by TEXT NOT NULL, ts REAL NOT NULL,
  PRIMARY KEY (app, scope));
"""

_COLUMNS = "id, app, requester, scopes, created, state, decided_by, decided, reason, source"


def _row(r: tuple) -> ApprovalRow:
    return ApprovalRow(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5], r[6], r[7],
                       r[8], r[9])


class SQLiteApprovalRows(ApprovalRows):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._f = SQLiteFile(path)
        self._f.write(lambda db: [db.execute(s) for s in _SCHEMA.split(";") if s.strip()])

    def add(self, row: ApprovalRow) -> None:
        self._f.write(lambda db: db.execute(
            f"INSERT INTO gov_approvals ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.id, row.app, row.requester, json.dumps(list(row.scopes)), row.created,
             row.state, row.decided_by, row.decided, row.reason, row.source)))

    def get(self, id: str) -> ApprovalRow | None:
        rows = self._f.read(f"SELECT {_COLUMNS} FROM gov_approvals WHERE id = ?", (id,))
        return _row(rows[0]) if rows else None

    def list(self, state: str | None) -> list[ApprovalRow]:
        return [_row(r) for r in self._f.read(
            f"SELECT {_COLUMNS} FROM gov_approvals WHERE (? IS NULL OR state = ?) "
            "ORDER BY created, id", (state, state))]

    def decide(self, id: str, state: str, by: str, now: float, reason: str) -> bool:
        return self._f.write(lambda db: db.execute(  # type: ignore[return-value]
            "UPDATE gov_approvals SET state = ?, decided_by = ?, decided = ?, reason = ? "
            "WHERE id = ? AND state = 'pending'", (state, by, now, reason, id)).rowcount == 1)

    def remember(self, app: str, scopes: tuple[str, ...], by: str, now: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            for scope in scopes:
                db.execute("INSERT OR IGNORE INTO gov_approved_scopes VALUES (?, ?, ?, ?)",
                           (app, scope, by, now))
        self._f.write(work)

    def approved(self, app: str) -> set[str]:
        return {s for (s,) in self._f.read(
            "SELECT scope FROM gov_approved_scopes WHERE app = ?", (app,))}

    def forget(self, app: str) -> None:
        self._f.write(lambda db: db.execute("DELETE FROM gov_approved_scopes WHERE app = ?",
                                            (app,)))

    def close(self) -> None:
        self._f.close()


class PostgresApprovalRows(ApprovalRows):
    def __init__(self, db: Any) -> None:
        """``db``: a :class:`skiff.store.postgres.PostgresDatabase`."""
        self.db = db

    def add(self, row: ApprovalRow) -> None:
        with self.db.connection() as conn:
            conn.execute(f"INSERT INTO gov_approvals ({_COLUMNS}) VALUES "
                         "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                         (row.id, row.app, row.requester, json.dumps(list(row.scopes)),
                          row.created, row.state, row.decided_by, row.decided, row.reason,
                          row.source))

    def get(self, id: str) -> ApprovalRow | None:
        with self.db.connection() as conn:
            r = conn.execute(f"SELECT {_COLUMNS} FROM gov_approvals WHERE id = %s",
                             (id,)).fetchone()
        return _row(r) if r else None

    def list(self, state: str | None) -> list[ApprovalRow]:
        with self.db.connection() as conn:
            return [_row(r) for r in conn.execute(
                f"SELECT {_COLUMNS} FROM gov_approvals WHERE (%s::text IS NULL OR state = %s) "
                "ORDER BY created, id", (state, state)).fetchall()]

    def decide(self, id: str, state: str, by: str, now: float, reason: str) -> bool:
        with self.db.connection() as conn:
            return conn.execute(
                "UPDATE gov_approvals SET state = %s, decided_by = %s, decided = %s, "
                "reason = %s WHERE id = %s AND state = 'pending'",
                (state, by, now, reason, id)).rowcount == 1

    def remember(self, app: str, scopes: tuple[str, ...], by: str, now: float) -> None:
        with self.db.transaction() as conn:
            for scope in scopes:
                conn.execute("INSERT INTO gov_approved_scopes VALUES (%s, %s, %s, %s) "
                             "ON CONFLICT DO NOTHING", (app, scope, by, now))

    def approved(self, app: str) -> set[str]:
        with self.db.connection() as conn:
            return {s for (s,) in conn.execute(
                "SELECT scope FROM gov_approved_scopes WHERE app = %s", (app,)).fetchall()}

    def forget(self, app: str) -> None:
        with self.db.connection() as conn:
            conn.execute("DELETE FROM gov_approved_scopes WHERE app = %s", (app,))


class Approvals:
    """The queue of held deploys over its rows; ``enabled``: SKIFF_APPROVALS."""

    def __init__(self, rows: ApprovalRows, *, enabled: bool) -> None:
        self.rows = rows
        self.enabled = enabled

    def needed(self, manifest: Manifest, current: Manifest | None, actor: Principal,
               identities_enabled: bool) -> list[str]:
        if not self.enabled or not identities_enabled or actor.via == "system":
            return []
        return requested(manifest, current, self.rows.approved(manifest.name))

    def hold(self, app: str, requester: Principal, wanted: list[str], source: str) -> ApprovalRow:
        row = ApprovalRow("apr_" + uuid.uuid4().hex[:12], app, requester.name, tuple(wanted),
                          time.time(), "pending", None, None, "", source)
        self.rows.add(row)
        return row

    def decide(self, id: str, actor: Principal, approve: bool, reason: str) -> ApprovalRow:
        """Approve (and remember its scopes) or deny a pending request."""
        actor.require(Role.operator, "deciding approvals")
        row = self.rows.get(id)
        if row is None:
            raise NotFound(f"no approval request {id!r}; see `skiff approvals ls`",
                           code="approval_not_found")
        if row.requester == actor.name:
            raise Forbidden(f"{actor.name} asked for {id} and may not decide it; another "
                            "operator must", code="self_approval", requester=row.requester)
        state = "approved" if approve else "denied"
        if not self.rows.decide(id, state, actor.name, time.time(), reason):
            raise Conflict(f"request {id} is {row.state} already", code="approval_decided",
                           state=row.state)
        if approve:
            self.rows.remember(row.app, row.scopes, actor.name, time.time())
        return self.rows.get(id)  # type: ignore[return-value]
