"""The level of a stored line and `--since`, as `skiff logs` reads them (pure)."""

from __future__ import annotations

import pytest

from skiff.observe.logview import at_least, line_level, normal_level, parse_since


@pytest.mark.parametrize(("stream", "line", "level"), [
    ("stdout", "hello", "info"),
    ("stderr", "Traceback (most recent call last):", "error"),
    ("stderr", "WARNING:root:disk almost full", "warning"),
    ("stdout", "[ERROR] 2026-01-01T00:00:00Z boom", "error"),
    ("stdout", '{"level": "DEBUG", "message": "x"}', "debug"),
    ("stderr", '{"levelname": "info", "msg": "y"}', "info"),
    ("stdout", '{"severity": "fatal"}', "critical"),
    ("stdout", '{"not": "a level"}', "info"),
    ("stdout", "{not json", "info"),
    ("platform", "request failed: timeout (status 504, 3000.00 ms, trace x)", "error"),
    ("platform", "revision abc deployed (lambda)", "info"),
    ("stdout", "information is not a level word", "info"),
])
def test_line_level(stream: str, line: str, level: str) -> None:
    assert line_level(stream, line) == level


def test_levels_order_and_aliases() -> None:
    assert normal_level("WARN") == "warning" and normal_level("loud") is None
    assert at_least("error", "warning") and not at_least("info", "warning")


def test_since() -> None:
    now = 1_000_000.0
    assert parse_since("10m", now) == now - 600
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1.5d", now) == now - 1.5 * 86400
    assert parse_since("999", now) == 999.0
    assert parse_since("1970-01-02T00:00:00Z", now) == 86400.0
    with pytest.raises(ValueError, match="30s, 10m"):
        parse_since("yesterday-ish", now)
