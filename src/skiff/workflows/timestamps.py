"""ISO-8601 timestamps as ASL takes them (Wait Timestamp, Timestamp* Choice operators).

AWS takes only the *extended offset date-time* form: a ``T`` between date and time and an
explicit offset (``Z`` or ``+hh:mm``); fractions may run to nanoseconds. Python's
``fromisoformat`` takes more than that (a space, no offset), so the form is checked first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FORM = re.compile(
    r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def parse(text: object) -> datetime | None:
    """The moment ``text`` names, or None when it is not an AWS timestamp."""
    if not isinstance(text, str):
        return None
    m = _FORM.match(text)
    if not m:
        return None
    date, time, frac, offset = m.groups()
    micros = (frac or "").ljust(6, "0")[:6]
    offset = "+00:00" if offset == "Z" else offset
    try:
        return datetime.fromisoformat(f"{date}T{time}.{micros}{offset}")
    except ValueError:
        return None


def to_epoch(moment: datetime) -> float:
    return moment.timestamp()


def format_epoch(seconds: float) -> str:
    """Epoch seconds as AWS prints context timestamps (``2024-01-01T00:00:00.000Z``)."""
    dt = datetime.fromtimestamp(seconds, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
