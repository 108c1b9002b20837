"""The contract every AlertRows backend keeps (alerts.db's SQLite and
PostgresAlertRows): episodes fired and resolved once, acks on the firing episode,
history, silences, the outbox."""

from __future__ import annotations

import threading

from skiff.store.alerts import AlertRows, Firing, SilenceRow

F = Firing("slo_availability:shop", "slo_availability", "shop", "page", "burns", 16.7, 14.4)


def test_an_episode_fires_once_and_resolves_once(alert_rows: AlertRows) -> None:
    """Eight evaluations (nodes) racing to fire one alert: one opens the episode; later
    fires update its figures; resolve ends it once; the next fire is episode 2."""
    rows = alert_rows
    won: list[int | None] = []
    threads = [threading.Thread(target=lambda: won.append(rows.fire(F, 10.0, False)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won, key=lambda w: w is None) == [1] + [None] * 7
    assert rows.fire(Firing(F.key, F.rule, F.subject, "ticket", "still", 3.5, 3.0), 20.0,
                     False) is None
    a = rows.alert(F.key)
    assert (a.state, a.episode, a.started, a.updated, a.summary, a.severity, a.value) == (
        "firing", 1, 10.0, 20.0, "still", "ticket", 3.5)
    done = rows.resolve(F.key, 30.0)
    assert done is not None and (done.state, done.resolved) == ("resolved", 30.0)
    assert rows.resolve(F.key, 31.0) is None
    assert rows.resolve("missing:x", 31.0) is None
    assert rows.fire(F, 40.0, True) == 2
    a = rows.alert(F.key)
    assert (a.episode, a.started, a.resolved, a.silenced) == (2, 40.0, None, True)


def test_an_ack_belongs_to_the_firing_episode(alert_rows: AlertRows) -> None:
    rows = alert_rows
    assert rows.ack(F.key, "user:ana", 5.0) is None  # no alert
    rows.fire(F, 10.0, False)
    acked = rows.ack(F.key, "user:ana", 11.0)
    assert (acked.acked_by, acked.acked_at) == ("user:ana", 11.0)
    rows.resolve(F.key, 12.0)
    assert rows.ack(F.key, "user:bo", 13.0) is None  # resolved
    assert rows.alert(F.key).acked_by == "user:ana"
    rows.fire(F, 14.0, False)
    assert rows.alert(F.key).acked_by is None  # a new episode starts unacknowledged


def test_listing_and_history(alert_rows: AlertRows) -> None:
    """Firing first, then the newest; history newest first, per alert on request."""
    rows = alert_rows
    other = Firing("error_rate:web", "error_rate", "web", "warning", "5xx", 0.5, 0.05)
    rows.fire(F, 10.0, False)
    rows.fire(other, 11.0, False)
    rows.resolve(other.key, 12.0)
    rows.ack(F.key, "admin", 13.0)
    rows.add_event("silence:s1", "silenced", 14.0, "admin", "rule=x")
    assert [a.key for a in rows.alerts()] == [F.key, other.key]
    assert [a.key for a in rows.alerts("resolved")] == [other.key]
    assert [a.key for a in rows.alerts("firing")] == [F.key]
    events = [(e["id"], e["event"], e["actor"]) for e in rows.history()]
    assert events == [("silence:s1", "silenced", "admin"), (F.key, "acked", "admin"),
                      (other.key, "resolved", ""), (other.key, "fired", ""),
                      (F.key, "fired", "")]
    assert [e["event"] for e in rows.history(key=F.key)] == ["acked", "fired"]
    assert len(rows.history(limit=2)) == 2
    assert rows.alert(F.key).to_dict()["id"] == F.key


def test_silences(alert_rows: AlertRows) -> None:
    rows = alert_rows
    rows.put_silence(SilenceRow("s2", {"subject": "web", "rule": "slo_*"}, 200.0, 1.0, "admin",
                                "deploying"))
    rows.put_silence(SilenceRow("s1", {"rule": "x"}, 100.0, 1.0, "admin", ""))
    assert [(s.id, s.matchers) for s in rows.silences()] == [
        ("s1", {"rule": "x"}), ("s2", {"rule": "slo_*", "subject": "web"})]
    assert rows.drop_silence("s1") is True and rows.drop_silence("s1") is False
    assert [s.id for s in rows.silences()] == ["s2"]


def test_the_outbox_retries_and_records_errors(alert_rows: AlertRows) -> None:
    rows = alert_rows
    first = rows.enqueue(F.key, "webhook", '{"event": {}}', 10.0)
    second = rows.enqueue(F.key, "slack", '{"text": "x"}', 11.0)
    assert [r.id for r in rows.due(11.0, 10)] == [first, second]
    assert [r.id for r in rows.due(10.5, 10)] == [first]
    rows.retry(first, 70.0, "RuntimeError: the webhook answered 500")
    rows.delivered(second, 12.0)
    assert rows.due(69.0, 10) == []
    (again,) = rows.due(70.0, 10)
    assert (again.id, again.attempts, again.channel) == (first, 1, "webhook")
    box = {r["id"]: r for r in rows.outbox()}
    assert box[first]["error"].endswith("500") and box[first]["delivered"] is None
    assert box[second]["delivered"] == 12.0 and box[second]["alert"] == F.key
    assert [r["id"] for r in rows.outbox(limit=1)] == [second]
