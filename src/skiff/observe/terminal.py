"""The lines `skiff up` and `skiff dev` print after "ready": one access line per
invocation and each app's output, prefixed with the app's name (as uvicorn and
``sam local`` do), in colour only on a TTY.

Lines are handed to a writer thread through a bounded deque: a terminal that
is slow, or a pipe nobody reads, must not stall the event loop (a ``print`` on
the request path blocks once the pipe's 64 KiB are full). Past
:data:`MAX_PENDING` lines waiting, the oldest are dropped and the count is said.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import zlib
from typing import TextIO

from skiff.logtext import one_line
from skiff.store import Invocation

#: Lines waiting for the writer: at 1,000 lines/s per instance (the log rate
#: limit) a few apps fill it only if the terminal stops reading for seconds.
MAX_PENDING = 10_000
#: Longest request path an access line shows (the request's own limit is the edge's).
MAX_PATH = 2048
#: How often the writer looks for lines: a person reads at this pace; polling
#: keeps the request path to one deque append (no lock, no wake-up).
WRITE_EVERY_SECONDS = 0.05

_COLOURS = (32, 33, 34, 35, 36, 92, 93, 94, 95, 96)  # ANSI foregrounds for app names
_RESET = "\x1b[0m"


class Terminal:
    def __init__(self, out: TextIO | None = None, *, colour: bool | None = None) -> None:
        self._out = out if out is not None else sys.stdout
        try:
            tty = self._out.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.colour = tty if colour is None else colour
        self._lines: collections.deque[tuple] = collections.deque(maxlen=MAX_PENDING)
        self._seen = 0  # appended (the writer compares with what it took: drops)
        self._taken = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- the request path: one append each ------------------------------------
    def access(self, rec: Invocation, method: str, path: str) -> None:
        self._seen += 1
        self._lines.append(("a", rec, method, path))

    def output(self, app: str, stream: str, line: str, request_id: str) -> None:
        self._seen += 1
        self._lines.append(("o", app, stream, line, request_id))

    # -- the writer ---------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="skiff-terminal", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self.drain()

    def _run(self) -> None:
        while not self._stop.wait(WRITE_EVERY_SECONDS):
            self.drain()

    def drain(self) -> None:
        """Write what is waiting (the writer thread's job; tests call it directly)."""
        lines = self._lines
        out: list[str] = []
        while lines:
            try:
                item = lines.popleft()
            except IndexError:
                break
            self._taken += 1
            out.append(self._format(item))
        dropped = self._seen - self._taken - len(lines)
        if dropped > 0:
            self._taken += dropped
            out.append(f"skiff: {dropped} terminal line(s) dropped (the terminal fell behind; "
                       "`skiff logs APP` has them)")
        if out:
            try:
                self._out.write("\n".join(out) + "\n")
                self._out.flush()
            except (OSError, ValueError):  # the terminal went away: nothing to tell
                pass

    def _format(self, item: tuple) -> str:
        stamp = time.strftime("%H:%M:%S")
        if item[0] == "a":
            _, rec, method, path = item
            # the path is the client's (decoded: %1b is an ESC): escaped, as app lines are
            what = one_line(f"{method} {path[:MAX_PATH]}") if method else rec.trigger
            if method and rec.trigger != "http":  # an async invocation of an HTTP request
                what += f" ({rec.trigger})"
            temp = f"cold {rec.init_ms:.0f}ms init" if rec.cold else "warm"
            status = str(rec.status)
            if self.colour:
                code = 32 if rec.status < 400 else 33 if rec.status < 500 else 31
                status = f"\x1b[{code}m{status}{_RESET}"
                if rec.cold:
                    temp = f"\x1b[36m{temp}{_RESET}"
            err = f" {rec.error}" if rec.error else ""
            return (f"{stamp} {self._name(rec.app)} {what} {status}{err} "
                    f"{rec.duration_ms:.1f}ms {temp} rid={rec.id}")
        _, app, stream, line, rid = item
        tag = "" if stream == "stdout" else f"[{stream}] "
        if self.colour and stream == "stderr":
            tag = f"\x1b[31m{tag}{_RESET}"
        suffix = f"  (rid={rid})" if rid and stream == "platform" else ""
        return f"{stamp} {self._name(app)} | {tag}{line}{suffix}"

    def _name(self, app: str) -> str:
        if not self.colour:
            return app
        colour = _COLOURS[zlib.crc32(app.encode()) % len(_COLOURS)]
        return f"\x1b[{colour}m{app}{_RESET}"
