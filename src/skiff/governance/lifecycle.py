"""TTL: an app lives ``spec.ttlDays`` (else the platform's default) from its last
deploy or renewal; owners are reminded before it expires; at expiry it is
archived and stops serving until someone restores it.

:class:`Lifecycle` decides, over a clock the caller passes (``tick(now)``), so
tests move time instead of sleeping and the server runs the same code on the
real clock. It does not archive anything itself: ``tick`` returns the apps that
expired and the platform archives them (``skiff.platform.archive``), since only
the platform knows an app's code, data and messages.

Reminders (:data:`REMINDERS` days before expiry) go out once per deploy or
renewal: the claim is a compare-and-set in the storage, so two nodes sharing a
database do not both send one, and a clock that jumps past both reminder times
sends the nearer one only (a 30-day reminder six days before expiry says the
wrong thing). Each becomes a CloudEvent ``skiff.app.expiring`` on the bus (apps
can subscribe with a rule) and rows in a durable outbox, one per configured
channel (``SKIFF_NOTIFY_WEBHOOK``: a JSON POST of the event;
``SKIFF_NOTIFY_SLACK_WEBHOOK``: its subject line as ``{"text": ...}``;
``SKIFF_SMTP_URL`` + ``SKIFF_NOTIFY_EMAIL``: a mail). The outbox is delivered at each tick and a
failed delivery is retried with exponential backoff (``skiff.notify``, shared
with alerts), so a webhook that is down for a day still gets every reminder,
late, once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skiff.errors import Forbidden, SkiffError, TooManyRequests
from skiff.governance.lifecycle_rows import ClockRow, LifecycleRows
from skiff.manifest import Manifest
from skiff.notify import Notifier, NotifySettings, deliver_due, payload

__all__ = ["DAY", "REMINDERS", "SWEEP_EVERY", "AppExpired", "Lifecycle", "Notifier",
           "NotifySettings", "Sweep"]

log = logging.getLogger(__name__)

DAY = 86400.0
#: days before expiry when the owner is reminded (issue 9 section 4)
REMINDERS = (30, 7)
EXPIRED = 0  # the "reminder" an expiry claims, so that one node archives the app
#: seconds between sweeps on the real clock: TTLs count in days, a minute late is on time
SWEEP_EVERY = 60.0
EVENT_SOURCE = "skiff/governance/lifecycle"
#: what happens at expiry: the platform's SKIFF_ON_EXPIRY, or an app's label of this name
ON_EXPIRY_LABEL = "skiff.dev/on-expiry"
ON_EXPIRY = ("archive", "throttle")


class AppExpired(TooManyRequests):
    """An expired app whose expiry action is ``throttle``: its routes answer this until
    it is renewed."""

    code = "app_expired"


@dataclass
class Sweep:
    """What one tick did."""

    reminded: list[dict] = field(default_factory=list)  # {"app", "days", "expires"}
    expired: list[str] = field(default_factory=list)  # for the caller to archive
    #: expired apps whose action is throttle, name -> expiry time (every sweep: they are
    #: throttled until renewed; those expiring in this sweep are in ``paused`` too)
    lapsed: dict[str, float] = field(default_factory=dict)
    paused: list[str] = field(default_factory=list)
    delivered: int = 0
    failed: int = 0

    def to_dict(self) -> dict:
        return {"reminded": self.reminded, "expired": self.expired, "paused": self.paused,
                "delivered": self.delivered, "failed": self.failed}


class Lifecycle:
    def __init__(self, rows: LifecycleRows, *, default_days: int, max_days: int,
                 publish: Callable[[dict], Any], notifier: Notifier,
                 running: Callable[[], dict[str, Manifest]],
                 on_expiry: str = "archive") -> None:
        """``running``: the apps served now, by name; ``publish``: the event plane's;
        ``on_expiry``: archive, or throttle (an app's ``skiff.dev/on-expiry`` label wins)."""
        if on_expiry not in ON_EXPIRY:
            raise SkiffError(f"SKIFF_ON_EXPIRY must be archive or throttle, not {on_expiry!r}",
                             code="bad_config", status=500)
        self.on_expiry = on_expiry
        self.rows = rows
        self.default_days = default_days
        self.max_days = max_days
        self._publish = publish
        self._notifier = notifier
        self._running = running

    # -- the clock of one app ------------------------------------------------------------
    def deployed(self, app: str, now: float | None = None) -> None:
        """A deploy (or restore) of ``app``: its TTL counts from now, reminders start over."""
        self.rows.start_clock(app, time.time() if now is None else now, None)

    def action(self, manifest: Manifest) -> str:
        """What expiry does to the app: archive it, or throttle it until renewed."""
        label = manifest.metadata.labels.get(ON_EXPIRY_LABEL)
        return label if label in ON_EXPIRY else self.on_expiry

    def ttl_days(self, manifest: Manifest, clock: ClockRow | None) -> int:
        """The app's TTL in days; 0: it does not expire."""
        if clock is not None and clock.days:
            return clock.days
        return manifest.spec.ttl_days or self.default_days

    def expires(self, manifest: Manifest) -> float | None:
        clock = self.rows.clock(manifest.name)
        days = self.ttl_days(manifest, clock)
        if not days or clock is None:
            return None
        return clock.base + days * DAY

    def renew(self, manifest: Manifest, days: int, now: float | None = None) -> float:
        """``days`` more from now (limited by the policy maximum); returns the new expiry."""
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise SkiffError(f"--days must be a whole number of days, 1 or more, got {days!r}",
                             code="bad_ttl", status=400)
        if self.max_days and days > self.max_days:
            raise Forbidden(f"a renewal of {days} days is over the platform's maximum TTL of "
                            f"{self.max_days} days (SKIFF_POLICY_MAX_TTL_DAYS); renew for at "
                            f"most {self.max_days}", code="ttl_over_max", max_days=self.max_days)
        base = time.time() if now is None else now
        self.rows.start_clock(manifest.name, base, days)
        return base + days * DAY

    def status(self, manifest: Manifest) -> dict:
        clock = self.rows.clock(manifest.name)
        days = self.ttl_days(manifest, clock)
        expires = clock.base + days * DAY if (days and clock) else None
        return {"ttl_days": days or None, "since": clock.base if clock else None,
                "expires": expires, "renewed": bool(clock and clock.days),
                "reminded": [d for d in clock.reminded if d != EXPIRED] if clock else []}

    # -- the sweep ------------------------------------------------------------------------
    def tick(self, now: float) -> Sweep:
        """Remind the apps whose reminder time has come, return those that expired, and
        deliver the outbox. Blocking (storage, the webhook, SMTP): run it off the loop."""
        sweep = Sweep()
        for name, manifest in sorted(self._running().items()):
            try:
                self._check(name, manifest, now, sweep)
            except Exception:  # one app's row never stops the sweep of the others
                log.exception("lifecycle of app %s", name)
        self.deliver(now, sweep)
        return sweep

    def _check(self, name: str, manifest: Manifest, now: float, sweep: Sweep) -> None:
        clock = self.rows.clock(name)
        if clock is None:  # served before lifecycles were kept: its TTL counts from now
            # (the real now: a sweep at a moved clock must not date an app in the future)
            self.rows.start_clock(name, min(now, time.time()), None)
            clock = self.rows.clock(name)
            assert clock is not None
        days = self.ttl_days(manifest, clock)
        if not days:
            return
        expires = clock.base + days * DAY
        if now >= expires:
            throttle = self.action(manifest) == "throttle"
            if throttle:
                sweep.lapsed[name] = expires
            # claimed as "the reminder 0 days before": one node of several archives it
            if self.rows.claim_reminder(name, clock.base, (EXPIRED,)):
                (sweep.paused if throttle else sweep.expired).append(name)
            return
        due = tuple(d for d in REMINDERS if now >= expires - d * DAY and d not in clock.reminded)
        if not due or not self.rows.claim_reminder(name, clock.base, due):
            return
        nearest = min(due)
        self._remind(manifest, nearest, expires, now)
        sweep.reminded.append({"app": name, "days": nearest, "expires": expires})

    def _remind(self, manifest: Manifest, days: int, expires: float, now: float) -> None:
        name = manifest.name
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires))
        renew = f"skiff renew {name} --days N --reason TEXT"
        event = {"specversion": "1.0", "type": "skiff.app.expiring", "source": EVENT_SOURCE,
                 "id": str(uuid.uuid4()), "subject": name,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                 "datacontenttype": "application/json",
                 "data": {"app": name, "owner": manifest.metadata.owner, "days_left": days,
                          "expires": expires, "renew": renew,
                          "restore": f"skiff restore {name}"}}
        self.notify(event, f"Skiff app {name} expires in {days} days ({when})",
                    f"The app {name} (owner {manifest.metadata.owner or 'none'}) expires on "
                    f"{when}. Then it is "
                    + ("paused: its routes answer 429 until it is renewed.\n\n"
                       if self.action(manifest) == "throttle"
                       else "archived and its routes answer 410 Gone.\n\n")
                    + f"To keep it, renew it:  {renew}\n"
                    f"An archived app comes back with:  skiff restore {name}\n", now)

    def expired_error(self, name: str, expires: float) -> AppExpired:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires))
        return AppExpired(f"app {name} expired on {when} and is paused until its owner renews "
                          f"it: `skiff renew {name} --days N --reason TEXT`",
                          expired=expires, retry_after=3600)

    def expiry_failed(self, name: str) -> None:
        """The archive of an expired app failed: the next sweep tries again (its clock,
        reminders and all, is as it was)."""
        clock = self.rows.clock(name)
        if clock is not None:
            self.rows.start_clock(name, clock.base, clock.days)
            rest = tuple(d for d in clock.reminded if d != EXPIRED)
            if rest:
                self.rows.claim_reminder(name, clock.base, rest)

    def notify(self, event: dict, subject: str, text: str, now: float) -> None:
        """The event on the bus, and one outbox row per channel configured."""
        try:
            self._publish(event)
        except Exception:  # the outbox still tells the owner
            log.exception("publishing %s for %s", event["type"], event["subject"])
        for channel in self._notifier.settings.channels:
            self.rows.enqueue(channel, payload(channel, event, subject, text), now)

    def deliver(self, now: float, sweep: Sweep | None = None) -> Sweep:
        """The outbox's due rows, through the one notifier (skiff.notify)."""
        sweep = sweep or Sweep()
        delivered, failed = deliver_due(self.rows, self._notifier, now)
        sweep.delivered += delivered
        sweep.failed += failed
        return sweep
