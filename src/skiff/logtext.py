"""Log text an app wrote, made safe to show: one line stays one line.

An app's output is shown by ``skiff logs`` and the dashboard next to the
platform's own lines. A newline, a carriage return or an ANSI escape in it
would let the app print a second, forged line ("... platform  deployed
revision ...") or rewrite the terminal; bidirectional-text controls would let
it reorder what a reader sees. Every such character is written as a visible
escape (``\\n``, ``\\x1b``, ``\\u202e``); tabs stay.
"""

from __future__ import annotations

import re

# C0 controls but tab, DEL, C1 (NEL among them), line/paragraph separators, bidi controls
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """``text`` with every character that could break or disguise a log line escaped."""
    # the search first: almost every line has nothing to escape, and this runs per line
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text
