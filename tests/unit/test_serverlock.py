"""The home's server lock: one holder; a lock file left by a dead server blocks nothing."""

from __future__ import annotations

import json
import os

import pytest

from skiff.errors import HomeInUse
from skiff.serverlock import ServerLock


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_url(tmp_path) -> None:
    first = ServerLock(tmp_path)
    first.acquire()
    (tmp_path / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid":
                                                      os.getpid()}))
    with pytest.raises(HomeInUse) as caught:
        ServerLock(tmp_path).acquire()
    assert caught.value.details == {"pid": os.getpid(), "url": "http://127.0.0.1:9"}
    assert caught.value.exit_code == 2
    first.release()
    again = ServerLock(tmp_path)
    again.acquire()  # released: free again
    again.release()


def test_a_lock_file_left_behind_does_not_block(tmp_path) -> None:
    """The kernel drops an flock with its holder; only the file's text remains."""
    (tmp_path / "server.lock").write_text("999999999\n")
    (tmp_path / "server.json").write_text(json.dumps({"url": "http://x", "pid": 999999999}))
    lock = ServerLock(tmp_path)
    lock.acquire()
    assert (tmp_path / "server.lock").read_text() == f"{os.getpid()}\n"
    lock.release()
