"""The terminal's lines (in-process): what an access line says, that nothing a client
or an app sends reaches the terminal as a control sequence, colour only when asked."""

from __future__ import annotations

import io

from skiff.observe import Terminal
from skiff.store import Invocation


def _rec(**kw: object) -> Invocation:
    base = dict(id="rid-1", app="shop", revision="r1", instance="i1", trigger="http",
                cold=True, init_ms=12.0, duration_ms=3.25, queued_ms=0.0, memory_mb=128,
                status=200, error=None, ts=0.0)
    return Invocation(**{**base, **kw})  # type: ignore[arg-type]


def test_access_and_output_lines() -> None:
    out = io.StringIO()
    t = Terminal(out)
    t.access(_rec(), "GET", "/shop/cart")
    t.access(_rec(cold=False, status=504, error="timeout", trigger="event"), "POST", "/shop/")
    t.output("shop", "stderr", "boom", "rid-1")
    t.drain()
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("shop GET /shop/cart 200 3.2ms cold 12ms init rid=rid-1")
    assert lines[1].endswith("shop POST /shop/ (event) 504 timeout 3.2ms warm rid=rid-1")
    assert lines[2].endswith("shop | [stderr] boom")
    assert "\x1b" not in out.getvalue()  # a StringIO is no TTY


def test_a_clients_path_cannot_drive_the_terminal() -> None:
    out = io.StringIO()
    t = Terminal(out, colour=True)
    t.access(_rec(), "GET", "/shop/\x1b]0;pwned\x07\x1b[2J")
    t.drain()
    line = out.getvalue()
    assert "\x07" not in line and "\x1b]0" not in line and "\x1b[2J" not in line
    assert "\x1b[" in line  # our own colours only


def test_a_terminal_that_falls_behind_drops_the_oldest_and_says_so() -> None:
    out = io.StringIO()
    t = Terminal(out)
    for i in range(10_050):
        t.output("shop", "stdout", f"line {i}", "")
    t.drain()
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("line 50") and "50 terminal line(s) dropped" in lines[-1]
