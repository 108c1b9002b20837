"""How `skiff logs` reads the stored lines: the level of a line, and ``--since``.

A line has a stream (stdout, stderr, platform, egress), not a level, so its level
is read from it the way log viewers do: a JSON line's ``level`` / ``levelname``
(Powertools, structlog, python-json-logger), else a leading level word
(``ERROR:root:...`` from logging's default format, ``[WARNING] ...``); else
stderr is ``error`` (tracebacks, uncaught exceptions), a platform line that
reports a failure is ``error`` and everything else ``info``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

LEVELS = ("debug", "info", "warning", "error", "critical")
_ALIASES = {"warn": "warning", "fatal": "critical", "err": "error", "trace": "debug",
            "notice": "info", "exception": "error"}
_WORD = re.compile(r"\s*\[?(DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL|TRACE)\b[\]:]?",
                   re.IGNORECASE)
_PLATFORM_ERRORS = ("request failed", "response rejected", "async invocation")
_SINCE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def normal_level(name: str) -> str | None:
    """``name`` as one of :data:`LEVELS`, or None if it is none of them."""
    n = name.strip().lower()
    n = _ALIASES.get(n, n)
    return n if n in LEVELS else None


def line_level(stream: str, line: str) -> str:
    if line.startswith("{"):
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            for key in ("level", "levelname", "severity", "log.level"):
                value = doc.get(key)
                if isinstance(value, str) and (level := normal_level(value)):
                    return level
    match = _WORD.match(line)
    if match:
        return normal_level(match[1]) or "info"
    if stream == "stderr":
        return "error"
    if stream == "platform" and line.startswith(_PLATFORM_ERRORS):
        return "error"
    return "info"


def at_least(level: str, minimum: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(minimum)


def parse_since(value: str, now: float) -> float:
    """Epoch seconds from ``10m`` / ``2h`` / ``1d`` ago, an epoch number, or an ISO 8601
    time. Raises ValueError with what it accepts."""
    text = value.strip()
    match = _SINCE.fullmatch(text)
    if match:
        return now - float(match[1]) * _UNIT[match[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since={value!r} is not a time: use a duration ago (30s, 10m, 2h, "
                         "1d), epoch seconds or an ISO 8601 time") from None
    return when.timestamp() if when.tzinfo else when.astimezone().timestamp()
