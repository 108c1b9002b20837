"""Alerting over a moved clock (SQLite rows, a notifier that records): one notice per
episode and one recovery, silences that keep both quiet, failing channels retried
with backoff, the samples that churn and DLQ growth are measured over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skiff.errors import SkiffError
from skiff.notify import Notifier, NotifySettings
from skiff.observe.alerts import Alerting
from skiff.observe.slo import AppView, QueueView, Record
from skiff.store.alerts import SQLiteAlertRows

NOW = 1_000_000.0


class Recorder(Notifier):
    def __init__(self) -> None:
        super().__init__(NotifySettings(webhook="http://hook", slack_webhook="http://slack"))
        self.sent: list[tuple[str, dict]] = []
        self.down: set[str] = set()

    def send(self, channel: str, payload: dict) -> None:
        if channel in self.down:
            raise ConnectionError("refused")
        self.sent.append((channel, payload))


@pytest.fixture
def world(tmp_path: Path):
    rows = SQLiteAlertRows(tmp_path / "alerts.db")
    notifier = Recorder()
    yield Alerting(rows, notifier, ui_url="http://skiff/_skiff/ui/alerts"), notifier
    rows.close()


def failing(now: float) -> AppView:
    return AppView("shop", [Record(now - i, 500 if i % 2 else 200, 5.0) for i in range(100)],
                   availability=99.5)


def healthy(now: float) -> AppView:
    return AppView("shop", [Record(now - i, 200, 5.0) for i in range(100)], availability=99.5)


def slack(notifier: Recorder) -> list[str]:
    return [p["text"] for c, p in notifier.sent if c == "slack"]


def test_one_notice_per_episode_and_one_recovery(world) -> None:
    alerting, notifier = world
    out = alerting.evaluate(NOW, [failing(NOW)])
    assert out["fired"] == ["error_rate:shop", "slo_availability:shop"]
    assert out["delivered"] == 4
    for minute in range(1, 5):  # still failing: figures updated, nobody told again
        assert alerting.evaluate(NOW + 60 * minute, [failing(NOW + 60 * minute)])["fired"] == []
    assert len(notifier.sent) == 4
    event = next(p["event"] for c, p in notifier.sent if c == "webhook"
                 and p["event"]["subject"] == "slo_availability:shop")
    assert event["type"] == "skiff.alert.firing" and event["data"]["severity"] == "page"
    assert event["data"]["ack"] == "skiff alerts ack slo_availability:shop"
    assert event["data"]["url"] == "http://skiff/_skiff/ui/alerts"
    later = NOW + 600
    assert alerting.evaluate(later, [healthy(later)])["resolved"] == [
        "error_rate:shop", "slo_availability:shop"]
    assert sorted(slack(notifier)[2:]) == ["[RESOLVED] error_rate:shop after 10 min",
                                           "[RESOLVED] slo_availability:shop after 10 min"]
    assert alerting.evaluate(later + 60, [healthy(later + 60)])["resolved"] == []
    again = NOW + 3600
    alerting.evaluate(again, [failing(again)])
    assert alerting.rows.alert("slo_availability:shop").episode == 2
    assert len(slack(notifier)) == 6


def test_a_silence_keeps_an_episode_and_its_recovery_quiet(world) -> None:
    """Matched when it fires: marked silenced, nobody told, nor of its recovery; an
    alert the silence does not match is told as usual; an ended silence matches none."""
    alerting, notifier = world
    alerting.silence({"rule": "slo_*", "subject": "shop"}, NOW + 300, "admin", "drill", NOW)
    alerting.evaluate(NOW, [failing(NOW)])
    assert slack(notifier) == ["[FIRING warning] shop: 50% of 100 invocations failed (5xx) "
                               "in 5 min"]
    view = {a["id"]: a for a in alerting.view(NOW)}
    assert view["slo_availability:shop"]["silenced"] is True
    assert view["slo_availability:shop"]["notifications"] == []
    assert view["error_rate:shop"]["silenced_now"] is False
    alerting.evaluate(NOW + 600, [healthy(NOW + 600)])  # the silence has ended by now
    assert slack(notifier)[1:] == ["[RESOLVED] error_rate:shop after 10 min"]
    assert alerting.active_silences(NOW + 600) == []


def test_a_failing_channel_is_retried_with_backoff_and_shows(world) -> None:
    alerting, notifier = world
    notifier.down.add("webhook")
    out = alerting.evaluate(NOW, [failing(NOW)])
    assert (out["delivered"], out["failed"]) == (2, 2)
    channels = {c["channel"]: c for c in alerting.channels()}
    assert channels["webhook"]["state"] == "failing" and channels["webhook"]["attempts"] == 1
    assert channels["webhook"]["next_at"] == NOW + 60
    assert channels["webhook"]["error"] == "ConnectionError: refused"
    assert channels["slack"]["state"] == "delivered"
    assert alerting.deliver(NOW + 59) == (0, 0)
    assert alerting.deliver(NOW + 60) == (0, 2)  # 1 min, then 2 min
    assert alerting.deliver(NOW + 179) == (0, 0)
    notifier.down.clear()
    assert alerting.deliver(NOW + 180) == (2, 0)
    assert {c["channel"]: c["state"] for c in alerting.channels()} == {
        "webhook": "delivered", "slack": "delivered"}


def test_churn_and_dlq_growth_are_measured_over_remembered_samples(world) -> None:
    """Each evaluation passes today's counter; the growth over 15 min is read from
    what earlier evaluations saw."""
    alerting, _ = world
    for minute, started, depth in ((0, 3, 0), (10, 10, 1), (16, 30, 4)):
        now = NOW + 60 * minute
        out = alerting.evaluate(now, [AppView("shop", [], started=((now, started),))],
                                [QueueView("jobs", "jobs-dlq", ((now, depth),))])
    assert out["fired"] == ["dlq_growth:jobs", "instance_churn:shop"]
    summary = alerting.rows.alert("instance_churn:shop").summary
    assert summary == "shop: 27 instances started in 15 min"


def test_acks_and_silences_refuse_what_makes_no_sense(world) -> None:
    alerting, _ = world
    with pytest.raises(SkiffError) as err:
        alerting.ack("nope:x", "admin", NOW)
    assert (err.value.status, err.value.code) == (404, "alert_not_found")
    alerting.evaluate(NOW, [failing(NOW)])
    assert alerting.ack("slo_availability:shop", "user:ana", NOW + 1).acked_by == "user:ana"
    alerting.evaluate(NOW + 600, [healthy(NOW + 600)])
    with pytest.raises(SkiffError) as err:
        alerting.ack("slo_availability:shop", "user:ana", NOW + 601)
    assert (err.value.status, err.value.code) == (409, "alert_not_firing")
    for matchers, until in (({}, NOW + 60), ({"app": "x"}, NOW + 60), ({"rule": 3}, NOW + 60),
                            ({"rule": "x"}, NOW - 1), ({"rule": "x"}, NOW + 91 * 86400)):
        with pytest.raises(SkiffError) as err:
            alerting.silence(matchers, until, "admin", "", NOW)
        assert (err.value.status, err.value.code) == (400, "bad_silence")
    with pytest.raises(SkiffError) as err:
        alerting.unsilence("nope", "admin", NOW)
    assert err.value.code == "silence_not_found"
    assert json.dumps(alerting.view(NOW))  # what the API answers is JSON


def test_the_memory_figure_is_the_kernels(tmp_path: Path) -> None:
    """memory_high reads a cgroup's own count (v2 memory.current, v1 usage_in_bytes),
    never a figure from the instance; an unreadable one is no figure."""
    from skiff.instance.cgroups import Cgroup

    (tmp_path / "memory.current").write_text("241172480\n")
    assert Cgroup({"unified": tmp_path}, 2).memory_bytes() == 241172480
    (tmp_path / "memory.usage_in_bytes").write_text("not a number")
    assert Cgroup({"memory": tmp_path}, 1).memory_bytes() is None
    assert Cgroup({}, 2).memory_bytes() is None


def test_a_node_local_alert_is_resolved_by_its_node(tmp_path: Path) -> None:
    """Churn is what one node's pools see: node a fires shop@a; node b, which sees no
    churn, leaves it firing while a keeps it updated, and resolves it once a is gone."""
    rows = SQLiteAlertRows(tmp_path / "alerts.db")
    try:
        a = Alerting(rows, Recorder(), node="a")
        b = Alerting(rows, Recorder(), node="b")
        for minute, started in ((0, 0), (16, 40)):
            now = NOW + 60 * minute
            out = a.evaluate(now, [AppView("shop", [], started=((now, started),))])
        assert out["fired"] == ["instance_churn:shop@a"]
        quiet = AppView("shop", [], started=((NOW + 17 * 60, 0),))
        assert b.evaluate(NOW + 17 * 60, [quiet])["resolved"] == []
        assert b.evaluate(NOW + 27 * 60, [quiet])["resolved"] == ["instance_churn:shop@a"]
    finally:
        rows.close()


def test_an_alert_resolves_only_after_five_quiet_minutes(world) -> None:
    """Errors that come and go every minute keep one episode firing, told once."""
    alerting, notifier = world
    for minute in range(10):
        now = NOW + 60 * minute
        alerting.evaluate(now, [failing(now) if minute % 2 == 0 else healthy(now)])
    assert alerting.rows.alert("error_rate:shop").episode == 1
    assert len(slack(notifier)) == 2  # the two alerts' firing notices, nothing else
    assert alerting.evaluate(NOW + 12 * 60, [healthy(NOW + 12 * 60)])["resolved"] == []
    assert alerting.evaluate(NOW + 13 * 60, [healthy(NOW + 13 * 60)])["resolved"] == [
        "error_rate:shop", "slo_availability:shop"]
