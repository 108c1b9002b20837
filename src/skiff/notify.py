"""Notifications to people: webhooks (a CloudEvent as JSON, or a Slack-compatible
``{"text": ...}`` body) and e-mail over SMTP, delivered from a durable outbox.

One notifier and one delivery loop serve every sender (TTL reminders in
``governance.lifecycle``, alerts in ``observe.alerts``); each sender keeps its
own outbox rows in its own store and hands them to :func:`deliver_due`, which
retries a failed delivery with exponential backoff (1 min, 2, 4 ... capped at
6 hours) and records the error, so a channel that is down shows as failing
and still gets every message, late, once.

A leaf module: it imports nothing of skiff, so both governance and observe may
use it without either importing the other.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

#: notifications delivered per call: a backlog drains over a few ticks, never stalls one
DELIVER_BATCH = 50
#: the backoff of a failed delivery: 1 min, 2, 4 ... capped at 6 hours
BACKOFF_FIRST, BACKOFF_MAX = 60.0, 6 * 3600.0
#: a webhook or SMTP server that hangs must not hold the sweep
NOTIFY_TIMEOUT = 10.0
CHANNELS = ("webhook", "slack", "email")


@dataclass(frozen=True)
class NotifySettings:
    webhook: str = ""  # SKIFF_NOTIFY_WEBHOOK: a CloudEvent per message (JSON POST)
    smtp_url: str = ""  # SKIFF_SMTP_URL: smtp://[user:pass@]host[:port], smtps://...
    email_to: tuple[str, ...] = ()  # SKIFF_NOTIFY_EMAIL
    email_from: str = "skiff@localhost"  # SKIFF_NOTIFY_FROM
    slack_webhook: str = ""  # SKIFF_NOTIFY_SLACK_WEBHOOK: {"text": ...} (Slack, Mattermost...)

    @property
    def channels(self) -> tuple[str, ...]:
        return (("webhook",) if self.webhook else ()) + (
            ("slack",) if self.slack_webhook else ()) + (
            ("email",) if self.smtp_url and self.email_to else ())


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    channel: str  # one of CHANNELS
    payload: str  # JSON: see :func:`payload`
    attempts: int
    next_at: float


class Outbox(Protocol):
    """The primitives :func:`deliver_due` needs of a sender's store."""

    def due(self, now: float, limit: int) -> list[OutboxRow]: ...
    def delivered(self, id: int, now: float) -> None: ...
    def retry(self, id: int, next_at: float, error: str) -> None: ...


def payload(channel: str, event: dict, subject: str, text: str) -> str:
    """The outbox payload of one message on ``channel``: the CloudEvent for a webhook,
    a one-line text for Slack, subject and body for a mail."""
    if channel == "webhook":
        return json.dumps({"event": event})
    if channel == "slack":
        return json.dumps({"text": subject})
    return json.dumps({"subject": subject, "text": text})


class Notifier:
    """Delivers one outbox row; raises on failure (the caller retries later)."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    def send(self, channel: str, payload: dict) -> None:
        if channel == "webhook":
            self._post(self.settings.webhook, payload["event"], "application/cloudevents+json")
        elif channel == "slack":
            self._post(self.settings.slack_webhook, {"text": payload["text"]},
                       "application/json")
        elif channel == "email":
            self._email(payload["subject"], payload["text"])
        else:
            raise ValueError(f"unknown notification channel {channel!r}")

    def _post(self, url: str, body: dict, content_type: str) -> None:
        import httpx

        resp = httpx.post(url, json=body, timeout=NOTIFY_TIMEOUT,
                          headers={"content-type": content_type})
        if resp.status_code >= 300:
            raise RuntimeError(f"the webhook answered {resp.status_code}")

    def _email(self, subject: str, text: str) -> None:
        url = urlsplit(self.settings.smtp_url)
        secure = url.scheme == "smtps"
        port = url.port or (465 if secure else 25)
        msg = EmailMessage()
        msg["From"] = self.settings.email_from
        msg["To"] = ", ".join(self.settings.email_to)
        msg["Subject"] = subject
        msg.set_content(text)
        smtp: smtplib.SMTP = (smtplib.SMTP_SSL(url.hostname or "", port, timeout=NOTIFY_TIMEOUT,
                                               context=ssl.create_default_context())
                              if secure else
                              smtplib.SMTP(url.hostname or "", port, timeout=NOTIFY_TIMEOUT))
        with smtp:
            if url.username:
                smtp.login(unquote(url.username), unquote(url.password or ""))
            smtp.send_message(msg)


def backoff(attempts: int) -> float:
    """Seconds before the next try of a message that failed ``attempts + 1`` times."""
    return min(BACKOFF_FIRST * 2 ** attempts, BACKOFF_MAX)


def deliver_due(outbox: Outbox, notifier: Notifier, now: float) -> tuple[int, int]:
    """Send what is due; return (delivered, failed). Blocking: run it off the loop."""
    delivered = failed = 0
    for row in outbox.due(now, DELIVER_BATCH):
        try:
            notifier.send(row.channel, json.loads(row.payload))
        except Exception as exc:  # noqa: BLE001 - any failure is retried later
            wait = backoff(row.attempts)
            outbox.retry(row.id, now + wait, f"{type(exc).__name__}: {exc}")
            failed += 1
            log.warning("notification %d (%s) failed, retrying in %.0f s: %s", row.id,
                        row.channel, wait, exc)
        else:
            outbox.delivered(row.id, now)
            delivered += 1
    return delivered, failed
