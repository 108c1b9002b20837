"""Lifecycle.tick over a moved clock: when reminders are due, once each, the nearer
one only when the clock jumps past both; expiry; renewals within the maximum;
failed deliveries retried with backoff."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from skiff.errors import SkiffError
from skiff.governance.lifecycle import DAY, Lifecycle, Notifier, NotifySettings
from skiff.governance.lifecycle_rows import SQLiteLifecycleRows
from skiff.manifest import parse_manifest


class FakeNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__(NotifySettings(webhook="http://hook", smtp_url="smtp://mail",
                                        email_to=("ops@example.com",)))
        self.sent: list[tuple[str, dict]] = []
        self.failing = False

    def send(self, channel: str, payload: dict) -> None:
        if self.failing:
            raise ConnectionError("refused")
        self.sent.append((channel, payload))


def _manifest(name: str, ttl: int | None = None):
    spec: dict = {"handler": "handler:handler"}
    if ttl:
        spec["ttlDays"] = ttl
    return parse_manifest({"apiVersion": "skiff.dev/v1", "kind": "MicroApp",
                           "metadata": {"name": name, "owner": "user:ana"}, "spec": spec},
                          source="test")


@pytest.fixture
def world(tmp_path: Path):
    rows = SQLiteLifecycleRows(tmp_path / "governance.db")
    events: list[dict] = []
    notifier = FakeNotifier()
    apps = {"a": _manifest("a", 40), "forever": _manifest("forever")}
    life = Lifecycle(rows, default_days=0, max_days=90, publish=events.append,
                     notifier=notifier, running=lambda: apps)
    yield life, events, notifier, apps
    rows.close()


def test_reminders_once_each_then_expiry(world) -> None:
    life, events, notifier, _ = world
    life.deployed("a", now=0.0)
    assert life.tick(9 * DAY).reminded == []
    assert [r["days"] for r in life.tick(10 * DAY).reminded] == [30]  # exactly 30 days left
    assert life.tick(11 * DAY).reminded == []
    assert [r["days"] for r in life.tick(33 * DAY).reminded] == [7]
    assert life.tick(39 * DAY).reminded == []
    assert life.tick(40 * DAY).expired == ["a"]
    assert [(e["type"], e["data"]["days_left"]) for e in events] == [
        ("skiff.app.expiring", 30), ("skiff.app.expiring", 7)]
    assert sorted(c for c, _ in notifier.sent) == ["email", "email", "webhook", "webhook"]


def test_a_clock_that_jumps_past_both_sends_the_nearer_reminder_only(world) -> None:
    life, events, _, _ = world
    life.deployed("a", now=0.0)
    assert [r["days"] for r in life.tick(35 * DAY).reminded] == [7]
    assert life.tick(36 * DAY).reminded == []
    assert len(events) == 1


def test_no_ttl_and_no_default_never_expires_and_an_unknown_clock_starts_now(world) -> None:
    """An app served before lifecycles were kept gets its clock at the first sweep:
    nothing expires at an upgrade."""
    life, _, _, _ = world
    life.deployed("forever", now=0.0)
    assert life.tick(10_000 * DAY).expired == []
    assert life.rows.clock("a").base == 10_000 * DAY
    assert life.tick(10_040 * DAY).expired == ["a"]
    life.rows.drop_clock("a")
    life.tick(time.time() + 400 * DAY)  # a drill in the future: "a" is not dated there
    assert life.rows.clock("a").base <= time.time()
    assert "forever" not in life.tick(20_000 * DAY).expired


def test_a_renewal_restarts_the_clock_within_the_maximum(world) -> None:
    life, _, _, apps = world
    life.deployed("a", now=0.0)
    assert life.tick(11 * DAY).reminded
    with pytest.raises(SkiffError) as err:
        life.renew(apps["a"], 91, now=20 * DAY)
    assert err.value.code == "ttl_over_max" and err.value.status == 403
    with pytest.raises(SkiffError) as err:
        life.renew(apps["a"], 0, now=20 * DAY)
    assert err.value.code == "bad_ttl"
    assert life.renew(apps["a"], 60, now=20 * DAY) == 80 * DAY
    assert life.tick(45 * DAY).reminded == []  # 35 days left, reminders start over
    assert [r["days"] for r in life.tick(51 * DAY).reminded] == [30]
    assert life.tick(79 * DAY).expired == []
    assert life.tick(80 * DAY).expired == ["a"]


def test_failed_deliveries_are_retried_with_backoff(world) -> None:
    life, _, notifier, _ = world
    life.deployed("a", now=0.0)
    notifier.failing = True
    sweep = life.tick(11 * DAY)
    assert sweep.failed == 2 and sweep.delivered == 0
    notifier.failing = False
    assert life.deliver(11 * DAY + 30).delivered == 0  # not yet: the first wait is a minute
    assert life.deliver(11 * DAY + 60).delivered == 2
    assert life.deliver(12 * DAY).delivered == 0  # each once
    assert [r["attempts"] for r in life.rows.outbox()] == [2, 2]


def test_an_expiry_is_claimed_once_and_retried_after_a_failed_archive(world) -> None:
    """Nodes sharing the database: one sweep gets the expiry; a failed archive is
    tried again at the next sweep, with no reminder sent again."""
    life, events, _, _ = world
    life.deployed("a", now=0.0)
    life.tick(35 * DAY)
    assert life.tick(41 * DAY).expired == ["a"]
    assert life.tick(41 * DAY).expired == []  # another node's sweep
    life.expiry_failed("a")
    assert life.tick(42 * DAY).expired == ["a"]
    assert life.rows.clock("a").base == 0.0 and len(events) == 1
