"""Users, groups and tokens in PostgreSQL (see identity_rows.py), for several nodes
on one database: a token made on one node signs in on every other."""

from __future__ import annotations

from typing import Any

from skiff.governance.audit import AuditLog
from skiff.governance.identity_rows import IdentityRows, TokenRow


class PostgresIdentityRows(IdentityRows):
    def __init__(self, db: Any) -> None:
        """``db``: a :class:`skiff.store.postgres.PostgresDatabase` (not imported:
        governance sits beside store, not above it)."""
        self.db = db

    def add_user(self, name: str, groups: list[str], now: float) -> bool:
        with self.db.transaction() as conn:
            created = conn.execute("INSERT INTO gov_users VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                   (name, now)).rowcount == 1
            for group in groups:
                conn.execute("INSERT INTO gov_groups VALUES (%s, %s) ON CONFLICT DO NOTHING",
                             (group, now))
                conn.execute("INSERT INTO gov_members VALUES (%s, %s) ON CONFLICT DO NOTHING",
                             (name, group))
        return created

    def remove_user(self, name: str) -> bool:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM gov_members WHERE username = %s", (name,))
            return conn.execute("DELETE FROM gov_users WHERE name = %s", (name,)).rowcount == 1

    def add_group(self, name: str, now: float) -> bool:
        with self.db.connection() as conn:
            return conn.execute("INSERT INTO gov_groups VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                (name, now)).rowcount == 1

    def users(self) -> list[tuple[str, list[str], float]]:
        with self.db.connection() as conn:
            members: dict[str, list[str]] = {}
            for user, group in conn.execute(
                    "SELECT username, grp FROM gov_members ORDER BY grp").fetchall():
                members.setdefault(user, []).append(group)
            return [(n, members.get(n, []), c) for n, c in conn.execute(
                "SELECT name, created FROM gov_users ORDER BY name").fetchall()]

    def groups(self) -> list[tuple[str, list[str]]]:
        with self.db.connection() as conn:
            members: dict[str, list[str]] = {}
            for user, group in conn.execute(
                    "SELECT username, grp FROM gov_members ORDER BY username").fetchall():
                members.setdefault(group, []).append(user)
            return [(n, members.get(n, [])) for (n,) in conn.execute(
                "SELECT name FROM gov_groups ORDER BY name").fetchall()]

    def user_groups(self, name: str) -> list[str] | None:
        with self.db.connection() as conn:
            if conn.execute("SELECT 1 FROM gov_users WHERE name = %s", (name,)).fetchone() is None:
                return None
            return [g for (g,) in conn.execute(
                "SELECT grp FROM gov_members WHERE username = %s ORDER BY grp", (name,))]

    def add_token(self, row: TokenRow) -> None:
        with self.db.connection() as conn:
            conn.execute("INSERT INTO gov_tokens VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (row.id, row.digest, row.user, row.role, row.created, row.expires,
                          row.revoked))

    def token(self, digest: str) -> TokenRow | None:
        with self.db.connection() as conn:
            row = conn.execute("SELECT * FROM gov_tokens WHERE digest = %s", (digest,)).fetchone()
        return TokenRow(*row) if row else None

    def tokens(self) -> list[TokenRow]:
        with self.db.connection() as conn:
            return [TokenRow(*r) for r in conn.execute(
                "SELECT * FROM gov_tokens ORDER BY created, id").fetchall()]

    def revoke_token(self, token_id: str, now: float) -> bool:
        with self.db.connection() as conn:
            return conn.execute(
                "UPDATE gov_tokens SET revoked = %s WHERE id = %s AND revoked IS NULL",
                (now, token_id)).rowcount == 1

    def counts(self) -> tuple[int, int, int]:
        with self.db.connection() as conn:
            return conn.execute(
                "SELECT (SELECT COUNT(*) FROM gov_users), (SELECT COUNT(*) FROM gov_groups), "
                "(SELECT COUNT(*) FROM gov_tokens WHERE revoked IS NULL)").fetchone()


class PostgresAuditLog(AuditLog):
    def __init__(self, db: Any) -> None:
        self.db = db

    def _append(self, ts: float, actor: str, action: str, target: str, app: str | None,
                decision: str, reason: str, details: str) -> int:
        with self.db.connection() as conn:
            return conn.execute(
                "INSERT INTO gov_audit (ts, actor, action, target, app, decision, reason, "
                "details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING seq",
                (ts, actor, action, target, app, decision, reason, details)).fetchone()[0]

    def _query(self, app: str | None, since: float | None, actor: str | None,
               limit: int) -> list[tuple]:
        with self.db.connection() as conn:
            return conn.execute(
                "SELECT seq, ts, actor, action, target, app, decision, reason, details "
                "FROM gov_audit WHERE (%(app)s::text IS NULL OR app = %(app)s) "
                "AND (%(since)s::float8 IS NULL OR ts >= %(since)s) "
                "AND (%(actor)s::text IS NULL OR actor = %(actor)s) "
                "ORDER BY seq DESC LIMIT %(limit)s",
                {"app": app, "since": since, "actor": actor, "limit": limit}).fetchall()
