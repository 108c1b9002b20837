"""One server per home: ``$SKIFF_HOME/server.lock``, held with ``flock`` for the
server's lifetime. A second ``skiff up`` on the same home used to wait ~30 s on
SQLite's busy timeout and die with ``database is locked``; with the lock it stops
at once, naming the running server. The kernel drops an flock when its holder
dies however it dies, so a stale lock file never blocks a restart."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from skiff.errors import HomeInUse


class ServerLock:
    def __init__(self, home: Path) -> None:
        self.path = home / "server.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Hold the lock, or raise :class:`HomeInUse` naming the server that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._in_use() from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _in_use(self) -> HomeInUse:
        home = self.path.parent
        pid = url = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.path.read_text().strip())
        with contextlib.suppress(OSError, ValueError, AttributeError):
            info = json.loads((home / "server.json").read_text())
            if info.get("pid") == pid:  # else it is an older server's, or not written yet
                url = info.get("url")
        who = f"pid {pid}" if pid else "another process"
        where = f" at {url}" if url else " (still starting)"
        return HomeInUse(f"a Skiff server is already running on home {home}: {who}{where}; "
                         "stop it first, or start this one with another --home (SKIFF_HOME)",
                         pid=pid, url=url)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
