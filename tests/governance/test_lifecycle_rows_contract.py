"""The contract every LifecycleRows backend keeps (governance.db's SQLite and
PostgresLifecycleRows): TTL clocks, reminders claimed once, archives, the outbox."""

from __future__ import annotations

import threading

from skiff.governance.lifecycle_rows import ArchiveRow, LifecycleRows


def test_a_clock_restarts_and_its_reminders_start_over(lifecycle_rows: LifecycleRows) -> None:
    """start_clock sets the base (and a renewal's days); a restart clears the reminders."""
    rows = lifecycle_rows
    assert rows.clock("a") is None
    rows.start_clock("a", 100.0, None)
    assert rows.claim_reminder("a", 100.0, (30,)) is True
    assert rows.clock("a").reminded == (30,)
    rows.start_clock("a", 200.0, 45)
    clock = rows.clock("a")
    assert (clock.base, clock.days, clock.reminded) == (200.0, 45, ())
    rows.start_clock("b", 1.0, None)
    assert [c.app for c in rows.clocks()] == ["a", "b"]
    rows.drop_clock("a")
    assert rows.clock("a") is None


def test_a_reminder_is_claimed_once_and_only_for_its_clock(lifecycle_rows: LifecycleRows) -> None:
    """Two sweeps (two nodes) racing for one reminder: one wins; a claim for a clock
    that was restarted meanwhile loses."""
    rows = lifecycle_rows
    rows.start_clock("a", 100.0, None)
    wins: list[bool] = []
    threads = [threading.Thread(target=lambda: wins.append(rows.claim_reminder(
        "a", 100.0, (30,)))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]
    assert rows.claim_reminder("a", 100.0, (7, 30)) is False  # 30 went already
    assert rows.claim_reminder("a", 99.0, (7,)) is False  # not this clock
    assert rows.claim_reminder("a", 100.0, (7,)) is True
    assert rows.clock("a").reminded == (7, 30)
    assert rows.claim_reminder("missing", 1.0, (7,)) is False


def test_archives_are_one_per_app(lifecycle_rows: LifecycleRows) -> None:
    rows = lifecycle_rows
    first = ArchiveRow("a", "/x/a-1.tar.gz", 5.0, "expired", ((None, "/a"), ("a.example", "")))
    rows.put_archive(first)
    assert rows.archive("a") == first
    newer = ArchiveRow("a", "/x/a-2.tar.gz", 6.0, "removed", ())
    rows.put_archive(newer)
    assert rows.archives() == [newer]
    assert rows.drop_archive("a") is True and rows.drop_archive("a") is False
    assert rows.archive("a") is None


def test_the_outbox_delivers_what_is_due_and_retries_later(lifecycle_rows: LifecycleRows) -> None:
    rows = lifecycle_rows
    one = rows.enqueue("webhook", '{"n": 1}', 10.0)
    two = rows.enqueue("email", '{"n": 2}', 11.0)
    assert [r.id for r in rows.due(10.5, 10)] == [one]
    assert [r.id for r in rows.due(11.0, 10)] == [one, two]
    rows.retry(one, 100.0, "ConnectError: refused")
    rows.delivered(two, 12.0)
    assert rows.due(50.0, 10) == []
    due = rows.due(100.0, 10)
    assert [(r.id, r.attempts, r.channel, r.payload) for r in due] == [
        (one, 1, "webhook", '{"n": 1}')]
    every = {r["id"]: r for r in rows.outbox()}
    assert every[one]["error"] == "ConnectError: refused" and every[one]["delivered"] is None
    assert every[two]["delivered"] == 12.0 and every[two]["attempts"] == 1
