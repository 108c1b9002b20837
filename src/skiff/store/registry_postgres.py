"""The shared registry: apps, revisions, uids, route grants and code bundles in
PostgreSQL, one set for every node.

App uids are allocated here, cluster-wide, so an app runs as the same uid on
every node (its files stay its own wherever it runs). With a host-wide uid
registry (root), the node that allocates picks a uid free on its host and in
the cluster, and every node claims the app's uid on its host when it asks
for it, which refuses a uid another Skiff home of that host holds
(UidConflict) instead of sharing it.

Every change of what an app serves (:meth:`set_current`, :meth:`delete_app`,
:meth:`grant_route`, :meth:`revoke_route`) sends ``NOTIFY`` on :data:`CHANNEL`
with the app's name in the same transaction, so it is heard only once
committed. One listener thread per registry (started by the first
:meth:`add_listener`) passes those to the listeners. A notification sent while
that thread was not listening (it was connecting, or its connection broke)
reached no one, so after every LISTEN the listeners are told ``None``:
reconcile everything. The node that made a change hears it too (telling its
own notifications apart by server pid fails once a pid is reused by another
node's connection); a listener's reconcile finds nothing to do then.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from skiff.errors import UidConflict
from skiff.store.postgres import PostgresDatabase
from skiff.store.registry import Listener, Registry, RevisionRow
from skiff.store.uids import FIRST_APP_UID, LAST_APP_UID, UidRegistry

log = logging.getLogger(__name__)

#: The advisory lock uid allocation takes, cluster-wide ("uid").
_UID_LOCK = 0x756964
#: The NOTIFY channel of registry changes; the payload is the app's name.
CHANNEL = "skiff_registry"
#: How often the listener thread checks that it should still run (close waits for it).
_LISTEN_TICK = 0.2
#: Seconds between attempts to LISTEN again after the connection failed.
_RETRY = 1.0


class PostgresRegistry(Registry):
    def __init__(self, db: PostgresDatabase, *, uids: UidRegistry | None = None) -> None:
        self.db = db
        self._uids = uids
        self._listeners: list[Listener] = []
        self._listener: threading.Thread | None = None
        self._closing = threading.Event()
        #: Set while the listener thread's LISTEN is in place (tests wait on it).
        self.listening = threading.Event()
        if uids is not None:
            with db.connection() as conn:
                uids.claim(dict(conn.execute("SELECT app, uid FROM app_uids").fetchall()))

    def put_revision(self, row: RevisionRow) -> None:
        with self.db.connection() as conn:
            conn.execute("INSERT INTO revisions VALUES (%s, %s, %s, %s, %s, %s) "
                         "ON CONFLICT DO NOTHING",
                         (row.app, row.revision, json.dumps(row.manifest, sort_keys=True),
                          row.code_dir, row.env_key, row.created))

    def set_current(self, app: str, revision: str) -> None:
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO apps VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE "
                         "SET revision = EXCLUDED.revision, updated = EXCLUDED.updated",
                         (app, revision, now, now))
            _notify(conn, app)

    def current(self, app: str) -> str | None:
        with self.db.connection() as conn:
            row = conn.execute("SELECT revision FROM apps WHERE name = %s", (app,)).fetchone()
        return row[0] if row else None

    def apps(self) -> list[tuple[str, str]]:
        with self.db.connection() as conn:
            return [tuple(r) for r in conn.execute(
                "SELECT name, revision FROM apps ORDER BY name").fetchall()]

    def revision(self, app: str, revision: str) -> RevisionRow | None:
        with self.db.connection() as conn:
            row = conn.execute("SELECT * FROM revisions WHERE app = %s AND revision = %s",
                               (app, revision)).fetchone()
        return _revision(row) if row else None

    def revisions(self, app: str) -> list[RevisionRow]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT * FROM revisions WHERE app = %s ORDER BY created",
                                (app,)).fetchall()
        return [_revision(r) for r in rows]

    def uid_for(self, app: str) -> int:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT uid FROM app_uids WHERE app = %s", (app,)).fetchone()
            if row is None:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_UID_LOCK,))
                row = conn.execute("SELECT uid FROM app_uids WHERE app = %s", (app,)).fetchone()
            if row is not None:  # allocated before (maybe by another node): this host claims it
                if self._uids is not None:
                    self._uids.claim({app: row[0]})
                return row[0]
            taken = [r[0] for r in conn.execute(
                "SELECT uid FROM app_uids UNION SELECT uid FROM released_uids")]
            if self._uids is not None:  # free on this host and in the cluster
                uid = self._uids.allocate(app, avoid=taken)
            else:
                uid = max([FIRST_APP_UID - 1, *taken]) + 1
            if uid > LAST_APP_UID:
                raise UidConflict(f"the cluster has no app uid left below {LAST_APP_UID}",
                                  code="uids_exhausted")
            conn.execute("INSERT INTO app_uids VALUES (%s, %s)", (app, uid))
        return uid

    def release_uid(self, app: str) -> None:
        with self.db.transaction() as conn:
            row = conn.execute("DELETE FROM app_uids WHERE app = %s RETURNING uid",
                               (app,)).fetchone()
            if row is None:
                return
            conn.execute("INSERT INTO released_uids VALUES (%s) ON CONFLICT DO NOTHING", row)
        if self._uids is not None:
            self._uids.release(app)

    def delete_app(self, app: str) -> None:
        with self.db.transaction() as conn:
            for table, column in (("apps", "name"), ("revisions", "app"),
                                  ("route_grants", "app"), ("code_bundles", "app")):
                conn.execute(f"DELETE FROM {table} WHERE {column} = %s", (app,))
            _notify(conn, app)

    def grant_route(self, app: str, host: str | None, path: str) -> None:
        with self.db.transaction() as conn:
            if conn.execute("INSERT INTO route_grants VALUES (%s, %s, %s, %s) "
                            "ON CONFLICT DO NOTHING",
                            (app, host or "", path, time.time())).rowcount:
                _notify(conn, app)

    def revoke_route(self, app: str, host: str | None, path: str) -> bool:
        with self.db.transaction() as conn:
            revoked = conn.execute(
                "DELETE FROM route_grants WHERE app = %s AND host = %s AND path = %s",
                (app, host or "", path)).rowcount == 1
            if revoked:
                _notify(conn, app)
        return revoked

    def route_grants(self, app: str | None = None) -> list[dict]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT app, host, path, created FROM route_grants "
                "WHERE %(app)s::text IS NULL OR app = %(app)s ORDER BY app, host, path",
                {"app": app}).fetchall()
        return [{"app": a, "host": h or None, "path": p, "created": c} for a, h, p, c in rows]

    def put_bundle(self, app: str, revision: str, data: bytes) -> None:
        with self.db.connection() as conn:
            conn.execute("INSERT INTO code_bundles VALUES (%s, %s, %s) ON CONFLICT (app, revision) "
                         "DO UPDATE SET data = EXCLUDED.data", (app, revision, data))

    def bundle(self, app: str, revision: str) -> bytes | None:
        with self.db.connection() as conn:
            row = conn.execute("SELECT data FROM code_bundles WHERE app = %s AND revision = %s",
                               (app, revision)).fetchone()
        return None if row is None else bytes(row[0])

    def has_bundle(self, app: str, revision: str) -> bool:
        with self.db.connection() as conn:
            return conn.execute("SELECT 1 FROM code_bundles WHERE app = %s AND revision = %s",
                                (app, revision)).fetchone() is not None

    def forget_host_uid(self, app: str) -> None:
        if self._uids is not None:
            self._uids.release(app)

    # -- what other nodes change --------------------------------------------------------
    def add_listener(self, callback: Listener) -> None:
        """See :meth:`Registry.add_listener`. Add listeners before the first LISTEN
        completes (at start) for them to get its ``None``."""
        self._listeners.append(callback)
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="skiff-registry-listen",
                                              daemon=True)
            self._listener.start()

    def _listen(self) -> None:
        while not self._closing.is_set():
            try:
                conn = self.db.connect()
            except Exception:  # the database is away: try again
                self._closing.wait(_RETRY)
                continue
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                self.listening.set()
                self._tell(None)  # what changed while no LISTEN was in place told no one
                while not self._closing.is_set():
                    for note in conn.notifies(timeout=_LISTEN_TICK):
                        self._tell(note.payload)
            except Exception:
                log.warning("the registry's LISTEN connection failed; listening again",
                            exc_info=True)
                self._closing.wait(_RETRY)
            finally:
                self.listening.clear()
                conn.close()

    def _tell(self, app: str | None) -> None:
        for callback in list(self._listeners):
            try:
                callback(app)
            except Exception:  # one listener's bug never stops the others hearing
                log.exception("a registry listener failed")

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None:
            self._listener.join()
        if self._uids is not None:
            self._uids.close()


def _notify(conn: object, app: str) -> None:
    """Tell the listeners of every node, once the transaction of ``conn`` commits."""
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, app))  # type: ignore[attr-defined]


def _revision(row: tuple) -> RevisionRow:
    app, revision, manifest, code_dir, env_key, created = row
    return RevisionRow(app, revision, json.loads(manifest), code_dir, env_key, created)
