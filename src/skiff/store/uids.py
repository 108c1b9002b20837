"""The host-wide registry of app uids: one SQLite file (``/var/lib/skiff/uids.db``,
or ``$SKIFF_UID_REGISTRY``) shared by every Skiff home on the machine.

Threat: apps run as their own uid, and a uid is what the kernel checks before
one process may signal, trace or read another's files. Two homes that each
count uids from 100000 give apps of different platforms the same uid (one
killed the other's instances), and a uid handed out again after its app was
deleted gives the new app the old one's leftovers. So:

- a uid is allocated once, host-wide, in one ``BEGIN IMMEDIATE`` transaction
  (uid is the primary key), naming the home and app that hold it;
- uids that /etc/passwd, /etc/subuid or /etc/subgid (container user
  namespaces) or a running process already use are skipped;
- a released uid stays in the registry, marked released, and is never handed
  out again;
- a home whose recorded uids another home holds refuses to start.

Only used when Skiff runs as root: otherwise no uid is ever dropped to.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from skiff.errors import SkiffError, UidConflict

DEFAULT_REGISTRY = Path("/var/lib/skiff/uids.db")
FIRST_APP_UID = 100_000  # far above system and login users
LAST_APP_UID = 2**31 - 2  # uid_t is unsigned, but many tools print uids as signed ints

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uids (
  uid INTEGER PRIMARY KEY,
  home TEXT NOT NULL,
  app TEXT NOT NULL,
  created REAL NOT NULL,
  released REAL  -- NULL while held; a released uid is never handed out again
);
CREATE UNIQUE INDEX IF NOT EXISTS uids_held ON uids (home, app) WHERE released IS NULL;
"""


class HostUids:
    """uids this host already uses: /etc/passwd, the subordinate ranges of
    /etc/subuid and /etc/subgid, and every running process (real, effective,
    saved and filesystem uids). Read once per allocation (allocations are rare)."""

    def __init__(self) -> None:
        self.uids: set[int] = set()
        self.ranges: list[range] = []
        with contextlib.suppress(OSError):
            for line in Path("/etc/passwd").read_text().splitlines():
                fields = line.split(":")
                if len(fields) > 2 and fields[2].isdigit():
                    self.uids.add(int(fields[2]))
        for sub in ("/etc/subuid", "/etc/subgid"):
            with contextlib.suppress(OSError):
                for line in Path(sub).read_text().splitlines():
                    fields = line.strip().split(":")
                    if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                        start = int(fields[1])
                        self.ranges.append(range(start, start + int(fields[2])))
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError), open(f"/proc/{entry.name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        self.uids.update(int(x) for x in line.split()[1:])
                        break

    def __contains__(self, uid: int) -> bool:
        return uid in self.uids or any(uid in r for r in self.ranges)

    def next_free(self, uid: int) -> int:
        """The first uid at or above ``uid`` that the host does not use."""
        while True:
            if uid in self.uids:
                uid += 1
                continue
            inside = next((r for r in self.ranges if uid in r), None)
            if inside is None:
                return uid
            uid = inside.stop


class UidRegistry:
    """One home's view of the host-wide registry."""

    def __init__(self, path: Path, home: Path) -> None:
        self.path = path
        self.home = str(home.resolve())
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # every home on the host writes here: durable, and wait for the lock
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30,
                                   check_same_thread=False)
        self._lock = threading.Lock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except BaseException:
            self._db.close()
            raise

    def claim(self, recorded: dict[str, int]) -> None:
        """Check (and register) the uids this home recorded before; raise
        UidConflict naming the other home if another home holds any of them."""
        conflicts = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for app, uid in sorted(recorded.items()):
                    row = self._db.execute("SELECT home, app FROM uids WHERE uid = ?",
                                           (uid,)).fetchone()
                    if row is None:  # recorded before this registry existed
                        self._db.execute("INSERT INTO uids VALUES (?, ?, ?, ?, NULL)",
                                         (uid, self.home, app, time.time()))
                    elif row[0] != self.home:
                        conflicts.append((app, uid, row[0], row[1]))
                self._db.execute("ROLLBACK" if conflicts else "COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if conflicts:
            app, uid, other, other_app = conflicts[0]
            more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            raise UidConflict(
                f"uid {uid} of app {app!r}{more} in this home ({self.home}) is held by the Skiff "
                f"home {other} (app {other_app!r}) in the host's uid registry {self.path}: "
                "apps of both would share a uid and could signal each other's instances. "
                f"Start this home with fresh uids (sqlite3 {self.home}/skiff.db "
                f"'DELETE FROM app_uids'), or, if {other} is gone for good, release its uids "
                f"(sqlite3 {self.path} \"UPDATE uids SET released = 1 WHERE home = '{other}'\")",
                other_home=other, uid=uid)

    def allocate(self, app: str, avoid: Iterable[int] = ()) -> int:
        """A uid no home, user or process on this host has had; the app's if it holds one."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT uid FROM uids WHERE home = ? AND app = ? AND released IS NULL",
                    (self.home, app)).fetchone()
                if row is not None:
                    self._db.execute("COMMIT")
                    return int(row[0])
                top = self._db.execute("SELECT max(uid) FROM uids").fetchone()[0]
                host, avoid = HostUids(), set(avoid)
                uid = host.next_free(max(FIRST_APP_UID, (top or 0) + 1))
                while uid in avoid:
                    uid = host.next_free(uid + 1)
                if uid > LAST_APP_UID:
                    raise UidConflict(f"the host's uid registry {self.path} has no uid left "
                                      f"below {LAST_APP_UID}", code="uids_exhausted")
                self._db.execute("INSERT INTO uids VALUES (?, ?, ?, ?, NULL)",
                                 (uid, self.home, app, time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return uid

    def release(self, app: str) -> None:
        """The app is deleted: its uid is kept as released, never handed out again."""
        with self._lock:
            self._db.execute("UPDATE uids SET released = ? WHERE home = ? AND app = ? "
                             "AND released IS NULL", (time.time(), self.home, app))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def host_registry(path: Path | None, home: Path) -> UidRegistry | None:
    """The registry, when this process can drop to uids at all (root)."""
    if os.geteuid() != 0:
        return None
    path = path or DEFAULT_REGISTRY
    try:
        return UidRegistry(path, home)
    except (OSError, sqlite3.Error) as exc:
        raise SkiffError(f"cannot open the host's uid registry {path}: {exc}; make its "
                          "directory writable, or point SKIFF_UID_REGISTRY at a file every "
                          "Skiff home on this host shares", code="uid_registry_unavailable",
                          status=500) from None
