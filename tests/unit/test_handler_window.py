"""The handler span's times: the instance's word (app code runs there) is kept only
within what the gateway itself saw."""

from __future__ import annotations

import pytest

from skiff.platform.invoke import handler_window


@pytest.mark.parametrize(("ran", "want"), [
    ((120, 180), (120, 180)),  # inside the gateway's window: as the instance timed it
    ((50, 180), (100, 180)),  # started before it was sent: from the send
    ((120, 900), (120, 200)),  # ended after its answer came: at the answer
    ((180, 120), (180, 180)),  # ends before it starts: a point
    ((-1, 1 << 70), (100, 200)),  # absurd: the gateway's window
    ((300, 400), (200, 200)),
    (None, (100, 200)),  # nothing said (a stream, a crash)
    ((1.5, 2.5), (100, 200)), ((1,), (100, 200)),
])
def test_handler_window(ran: object, want: tuple[int, int]) -> None:
    assert handler_window(ran, 100, 200) == want
