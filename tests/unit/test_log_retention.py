"""Log retention in the store: by age, and per app by lines and by bytes."""

from __future__ import annotations

import time

import pytest

from skiff.store import LogRetention, Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "skiff.db", retention=LogRetention(
        max_age_days=1, max_lines_per_app=100, max_bytes_per_app=10_000))
    yield s
    s.close()


def lines(store: Store, app: str) -> list[str]:
    return [r["line"] for r in store.logs(app, limit=10_000)]


def test_an_app_over_its_line_cap_loses_its_oldest_lines_only(store):
    """Past max_lines_per_app the oldest lines of that app go; another app keeps all."""
    store.log("quiet", "r", "", "", "stdout", "kept")
    for i in range(250):
        store.log("chatty", "r", "", "", "stdout", f"line {i}")
    store.flush()
    store.prune_logs()  # the writer thread may have pruned first: look at what is left
    assert lines(store, "chatty") == [f"line {i}" for i in range(150, 250)]
    assert lines(store, "quiet") == ["kept"]
    assert store.prune_logs() == 0


def test_an_app_over_its_byte_cap_is_pruned_to_it(store):
    """Long lines count by bytes: 30 lines of 1 KiB against a 10,000-byte cap."""
    for i in range(30):
        store.log("wide", "r", "", "", "stdout", f"{i:04d}" + "é" * 510)
    store.flush()
    store.prune_logs()
    kept = lines(store, "wide")
    assert sum(len(line.encode()) for line in kept) <= 10_000
    assert kept[-1].startswith("0029") and len(kept) >= 5


def test_lines_older_than_the_retention_go(store):
    """Lines older than max_age_days go, whatever their app; newer ones stay."""
    store.log("a", "r", "", "", "stdout", "old")
    store.log("b", "r", "", "", "stdout", "old too")
    store.flush()
    store.log("a", "r", "", "", "stdout", "new")
    store.flush()
    later = time.time() + 86400 - 1
    with store._lock:  # age the first two lines as if written two days ago
        store._db.execute("UPDATE logs SET ts = ts - 2 * 86400 WHERE line LIKE 'old%'")
    store.prune_logs(now=later)
    assert lines(store, "a") == ["new"]
    assert lines(store, "b") == []


def test_sizes_survive_a_reopen(tmp_path):
    """The per-app counts are measured from the file again, so a cap holds across
    restarts."""
    path = tmp_path / "skiff.db"
    s = Store(path, retention=LogRetention(max_lines_per_app=10))
    for i in range(8):
        s.log("a", "r", "", "", "stdout", str(i))
    s.close()
    s = Store(path, retention=LogRetention(max_lines_per_app=10))
    for i in range(8, 16):
        s.log("a", "r", "", "", "stdout", str(i))
    expected = [str(i) for i in range(6, 16)]
    deadline = time.monotonic() + 30  # the writer thread measures, then prunes
    while lines(s, "a") != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lines(s, "a") == expected
    s.close()
