"""Alerts as state: what :mod:`skiff.observe.slo` finds becomes a firing alert,
told once per episode, and a recovery notice when it stops; silences, acks and a
history, over :class:`skiff.store.alerts.AlertRows`.

    Alerting.evaluate(now, apps, queues)
      ├── slo.evaluate        pure: what fires now (``for`` durations held here)
      ├── rows.fire/resolve   compare-and-set: one node wins each transition ...
      ├── outbox              ... and only the winner enqueues its notices
      └── notify.deliver_due  the one notifier; failures retried with backoff

De-duplication is the episode: an alert is notified when it starts firing and
when it resolves, never at the evaluations between (its figures are updated).
It resolves once its rule has not held for :data:`RESOLVE_AFTER` (Prometheus'
``keep_firing_for``), so an app whose errors come and go (a hostile one can
make them) flaps no faster than that.
A silence (matchers on rule, subject and severity, as Alertmanager's, with an
end time) keeps an episode that fires while it matches from being told, and its
recovery too; the alert still shows, marked silenced. An ack records who and
when on the firing episode and ends at its resolution.

Several nodes on one database each evaluate every minute over the shared
records, so they agree on what fires. Two rules read what only one node sees
(its own instances: ``instance_churn``, ``memory_high``): their subject is
``app@node`` and only that node resolves them, else another node that sees no
churn would resolve what this one fires, every minute; one its node has not
updated for :data:`STALE_LOCAL` (the node is gone) any node resolves.

The callers pass the clock (``now``): the server evaluates every minute on the
real one (``SKIFF_ALERT_EVERY_SECONDS``); tests move it (``POST /_skiff/api/alerts/evaluate``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable

from skiff.errors import Conflict, NotFound, SkiffError
from skiff.notify import Notifier, deliver_due, payload
from skiff.observe.slo import AppView, Finding, QueueView, Thresholds, evaluate
from skiff.store.alerts import FIRING, AlertRow, AlertRows, Firing, SilenceRow

log = logging.getLogger(__name__)

EVENT_SOURCE = "skiff/observe/alerts"
MATCH_LABELS = ("rule", "subject", "severity")
#: rules over what only this node sees (its instances): told apart by node
NODE_LOCAL = frozenset({"instance_churn", "memory_high"})
STALE_LOCAL = 10 * 60.0
RESOLVE_AFTER = 5 * 60.0  # seconds a rule must not hold before its alert resolves
MAX_SILENCE = 90 * 86400.0  # a longer silence is a disabled rule: say so elsewhere
#: samples (instances started, DLQ depth) kept per app or queue: enough for the windows
SAMPLE_SPAN = 3600.0
MAX_SAMPLES = 240


class Alerting:
    def __init__(self, rows: AlertRows, notifier: Notifier, *,
                 thresholds: Thresholds | None = None, ui_url: str = "",
                 node: str = "") -> None:
        self.rows = rows
        self.node = node
        self._notifier = notifier
        self.thresholds = thresholds or Thresholds()
        self.ui_url = ui_url  # where a notice links to (the dashboard's alerts page)
        self._pending: dict[str, float] = {}
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, now: float, apps: Iterable[AppView],
                 queues: Iterable[QueueView] = ()) -> dict:
        """One evaluation at ``now``; each view's samples (``started``, ``depths``) are
        today's figure, added to what earlier evaluations saw. Blocking: run it off
        the loop."""
        apps = [dataclasses.replace(a, started=self._remember(f"app:{a.app}", a.started, now))
                for a in apps]
        queues = [dataclasses.replace(q, depths=self._remember(f"dlq:{q.queue}", q.depths, now))
                  for q in queues]
        result = evaluate(apps, queues, now, self._pending, self.thresholds)
        self._pending = result.pending
        findings = [dataclasses.replace(f, subject=f"{f.subject}@{self.node}")
                    if f.rule in NODE_LOCAL and self.node else f for f in result.findings]
        silences = self.active_silences(now)
        fired, resolved = [], []
        active = {f.key for f in findings}
        for f in findings:
            silenced = any(_matches(s.matchers, f) for s in silences)
            episode = self.rows.fire(Firing(f.key, f.rule, f.subject, f.severity, f.summary,
                                            f.value, f.threshold), now, silenced)
            if episode is None:
                continue
            fired.append(f.key)
            if not silenced:
                alert = self.rows.alert(f.key)
                assert alert is not None
                self._tell(alert, now)
        for alert in self.rows.alerts(FIRING):
            if alert.key in active or now - alert.updated < RESOLVE_AFTER \
                    or not self._judges(alert, now):
                continue
            done = self.rows.resolve(alert.key, now)
            if done is None:  # another node resolved it first
                continue
            resolved.append(alert.key)
            if not done.silenced and not any(_matches(s.matchers, done) for s in silences):
                self._tell(done, now)
        delivered, failed = deliver_due(self.rows, self._notifier, now)
        return {"fired": fired, "resolved": resolved, "firing": sorted(active),
                "delivered": delivered, "failed": failed}

    def _judges(self, alert: AlertRow, now: float) -> bool:
        """This node may resolve the alert: any node, unless only one node sees it and
        that node still evaluates it."""
        return alert.rule not in NODE_LOCAL or not self.node \
            or alert.subject.endswith(f"@{self.node}") or now - alert.updated > STALE_LOCAL

    def deliver(self, now: float) -> tuple[int, int]:
        return deliver_due(self.rows, self._notifier, now)

    def _remember(self, key: str, samples: Iterable[tuple[float, int]],
                  now: float) -> tuple[tuple[float, int], ...]:
        kept = self._samples.setdefault(key, deque(maxlen=MAX_SAMPLES))
        kept.extend(samples)
        while kept and kept[0][0] < now - SAMPLE_SPAN:
            kept.popleft()
        return tuple(kept)

    def _tell(self, alert: AlertRow, now: float) -> None:
        firing = alert.state == FIRING
        kind = "firing" if firing else "resolved"
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        data = alert.to_dict() | {"ack": f"skiff alerts ack {alert.key}"}
        if self.ui_url:
            data["url"] = self.ui_url
        event = {"specversion": "1.0", "type": f"skiff.alert.{kind}", "source": EVENT_SOURCE,
                 "id": str(uuid.uuid4()), "subject": alert.key, "time": when,
                 "datacontenttype": "application/json", "data": data}
        if firing:
            subject = f"[FIRING {alert.severity}] {alert.summary}"
            text = (f"{alert.summary}\n\nAlert {alert.key} ({alert.severity}) fired at {when}."
                    f"\nAcknowledge it:  skiff alerts ack {alert.key}\n"
                    f"Silence it:  skiff alerts silence --rule {alert.rule} "
                    f"--subject {alert.subject} --for 2h\n")
        else:
            minutes = max(0.0, now - alert.started) / 60
            subject = f"[RESOLVED] {alert.key} after {minutes:.0f} min"
            text = (f"Alert {alert.key} resolved at {when} after {minutes:.0f} min.\n"
                    f"It was: {alert.summary}\n")
        if self.ui_url:
            text += f"\n{self.ui_url}\n"
        for channel in self._notifier.settings.channels:
            self.rows.enqueue(alert.key, channel, payload(channel, event, subject, text), now)

    # -- operators ----------------------------------------------------------------------
    def ack(self, key: str, who: str, now: float) -> AlertRow:
        done = self.rows.ack(key, who, now)
        if done is not None:
            return done
        if self.rows.alert(key) is None:
            raise NotFound(f"no alert {key!r}: `skiff alerts ls` lists them",
                           code="alert_not_found")
        raise Conflict(f"alert {key} is resolved: only a firing alert is acknowledged",
                       code="alert_not_firing")

    def silence(self, matchers: dict[str, str], until: float, who: str, comment: str,
                now: float) -> SilenceRow:
        clean = check_matchers(matchers)
        if not now < until <= now + MAX_SILENCE:
            raise SkiffError(f"a silence ends in the future and within {MAX_SILENCE / 86400:g} "
                             "days (--for 2h, or until= epoch seconds)", code="bad_silence",
                             status=400)
        row = SilenceRow(uuid.uuid4().hex[:12], clean, until, now, who, comment[:500])
        self.rows.put_silence(row)
        self.rows.add_event("silence:" + row.id, "silenced", now, who,
                            f"{_label(clean)} until "
                            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(until))}: "
                            f"{row.comment}")
        return row

    def unsilence(self, id: str, who: str, now: float) -> None:
        if not self.rows.drop_silence(id):
            raise NotFound(f"no silence {id!r}: `skiff alerts silences` lists them",
                           code="silence_not_found")
        self.rows.add_event("silence:" + id, "unsilenced", now, who, "")

    def active_silences(self, now: float) -> list[SilenceRow]:
        return [s for s in self.rows.silences() if s.until > now]

    def view(self, now: float, state: str | None = None) -> list[dict]:
        """The alerts with what became of their notices (newest per channel) and whether
        a silence matches them now."""
        silences = self.active_silences(now)
        notices: dict[str, dict[str, dict]] = {}
        for row in reversed(self.rows.outbox(500)):  # oldest first: the newest wins
            notices.setdefault(row["alert"], {})[row["channel"]] = _notice(row)
        out = []
        for alert in self.rows.alerts(state):
            d = alert.to_dict()
            d["silenced_now"] = any(_matches(s.matchers, alert) for s in silences)
            d["notifications"] = sorted(notices.get(alert.key, {}).values(),
                                        key=lambda n: n["channel"])
            out.append(d)
        return out

    def channels(self) -> list[dict]:
        """Each configured channel and whether its newest notice got through."""
        newest: dict[str, dict] = {}
        for row in reversed(self.rows.outbox(500)):
            newest[row["channel"]] = _notice(row)
        return [{"channel": c} | (newest.get(c) or {"state": "idle"})
                for c in self._notifier.settings.channels]


def _notice(row: dict) -> dict:
    if row["delivered"]:
        state = "delivered"
    elif row["attempts"]:
        state = "failing"
    else:
        state = "pending"
    return {"channel": row["channel"], "state": state, "attempts": row["attempts"],
            "error": row["error"], "next_at": None if row["delivered"] else row["next_at"],
            "delivered": row["delivered"]}


def check_matchers(matchers: object) -> dict[str, str]:
    if not isinstance(matchers, dict) or not matchers:
        raise SkiffError("a silence needs at least one matcher: rule, subject or severity "
                         "(globs such as slo_* allowed)", code="bad_silence", status=400)
    clean = {}
    for label, value in matchers.items():
        if label not in MATCH_LABELS:
            raise SkiffError(f"silence matcher {str(label)[:40]!r} is not one of "
                             f"{', '.join(MATCH_LABELS)}", code="bad_silence", status=400)
        if not isinstance(value, str) or not 0 < len(value) <= 200:
            raise SkiffError(f"silence matcher {label} must be a string of 1-200 characters",
                             code="bad_silence", status=400)
        clean[label] = value
    return clean


def _matches(matchers: dict[str, str], alert: Finding | AlertRow) -> bool:
    labels = {"rule": alert.rule, "subject": alert.subject, "severity": alert.severity}
    return all(fnmatch.fnmatchcase(labels[k], v) for k, v in matchers.items())


def _label(matchers: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(matchers.items()))
