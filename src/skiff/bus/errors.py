"""Errors of the event plane. Each is a :class:`~skiff.errors.SkiffError` with an
HTTP ``status`` and a stable ``code``, so the gateway can answer bad input with a
clear 4xx instead of a traceback::

    SkiffError
    └── BusError              400 bus_error
        ├── InvalidMessage    400 invalid_message   bad queue name, body, attributes or argument
        ├── InvalidReceipt    400 invalid_receipt   a receipt this broker never issued
        ├── InvalidPattern    400 invalid_pattern   an EventBridge-style pattern does not validate
        ├── InvalidSchedule   400 invalid_schedule  rate()/cron()/at() expression or time zone
        └── InvalidEvent      400 invalid_event     a CloudEvent lacks or breaks a required attribute

Oversized message bodies raise :class:`skiff.errors.PayloadTooLarge` (413).
"""

from __future__ import annotations

from skiff.errors import SkiffError


class BusError(SkiffError):
    status = 400
    code = "bus_error"


class InvalidMessage(BusError):
    code = "invalid_message"


class InvalidReceipt(BusError):
    code = "invalid_receipt"


class InvalidPattern(BusError):
    """``details["path"]`` names the offending spot, e.g. ``detail.state[1].numeric``."""

    code = "invalid_pattern"


class InvalidSchedule(BusError):
    code = "invalid_schedule"


class InvalidEvent(BusError):
    """``details["attribute"]`` names the missing or invalid CloudEvents attribute."""

    code = "invalid_event"
