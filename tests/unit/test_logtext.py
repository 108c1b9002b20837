"""App text in logs stays one visible line."""

from __future__ import annotations

import pytest

from skiff.logtext import one_line


@pytest.mark.parametrize(("text", "shown"), [
    ("plain text, tabs\tstay", "plain text, tabs\tstay"),
    ("one\ntwo", "one\\ntwo"),
    ("over\rwrite", "over\\rwrite"),
    ("\x1b[2Kcleared", "\\x1b[2Kcleared"),
    ("nul\x00del\x7fnel\x85", "nul\\x00del\\x7fnel\\x85"),
    ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
    ("\u202etxet desrever", "\\u202etxet desrever"),
    ("naïve café ✓", "naïve café ✓"),
])
def test_one_line(text, shown):
    assert one_line(text) == shown
    assert "\n" not in one_line(text)
