"""The alert stage: deliver due outbox rows through apprise.

An alert is marked sent only after apprise reports success; a failure leaves
it pending with a later ``next_attempt_at`` (exponential backoff with jitter)
until ``max_attempts``, when it is dead-lettered. So a crash, or an endpoint
that is down, never loses an alert: delivery is at-least-once, and every
message carries the alert id so a duplicate is recognisable.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import apprise

from monitor.config import ChannelConfig, DeliverySettings
from monitor.models import PendingAlert
from monitor.routing import LOG_CHANNEL
from monitor.store import Store

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ChannelError(Exception):
    """A channel URL apprise cannot use. The message never holds the URL."""


def mask_url(url: str) -> str:
    """``slack://T0/B0/secret`` → ``slack://****`` (scheme only): safe to show."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"{scheme}://****"


def plain(text: str | None) -> str:
    return _CONTROL.sub("", text or "")


def format_alert(alert: PendingAlert) -> tuple[str, str]:
    """Title and plain-text body of one alert."""
    if alert.kind == "notice":
        return f"[newsmon] {plain(alert.title)}", f"{plain(alert.body)}\nNotice id: {alert.alert_key}"
    title = f"[{alert.topic}] {plain(alert.title) or '(untitled)'}"
    lines = [
        f"Topic: {alert.topic} ({alert.severity})   Score: {alert.score:.1f} / {alert.threshold:.1f}",
        f"Source: {plain(alert.source)}",
    ]
    if alert.published:
        lines.append(f"Published: {alert.published:%Y-%m-%d %H:%M} UTC")
    if alert.terms:
        lines.append("Terms: " + ", ".join(plain(t) for t in alert.terms[:10]))
    for sentence in alert.evidence[:3]:
        lines.append(f"> {plain(sentence.marked)[:500]}")
    if alert.url:
        lines.append(plain(alert.url))
    lines.append(f"Alert id: {alert.alert_key}")
    return title, "\n".join(lines)


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


class Deliverer:
    """Sends due alerts, one apprise object per channel, built once."""

    def __init__(self, channels: Sequence[ChannelConfig], settings: DeliverySettings,
                 *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.channels = {c.name: c for c in channels}
        self._apprise: dict[str, apprise.Apprise] = {}
        self._rng = rng or random.Random()
        errors = []
        for channel in channels:
            obj = apprise.Apprise()
            if not obj.add(channel.url):
                errors.append(
                    f"channel {channel.name}: apprise cannot use the URL {mask_url(channel.url)}"
                    " (check the scheme and the tokens)"
                )
                continue
            self._apprise[channel.name] = obj
        if errors:
            raise ChannelError("; ".join(errors))

    def backoff(self, attempts: int) -> float:
        base = min(self.settings.retry_max, self.settings.retry_base * (2 ** max(attempts, 0)))
        return base * (0.5 + self._rng.random() / 2)  # jitter: spread retries of many alerts

    def send(self, alert: PendingAlert) -> bool:
        title, body = format_alert(alert)
        if alert.channel == LOG_CHANNEL:
            log.info("ALERT %s %s | %s", alert.alert_key, title, body.replace("\n", " | "))
            return True
        obj = self._apprise.get(alert.channel)
        if obj is None:
            log.warning("alert %s: channel %s is no longer configured", alert.alert_key,
                        alert.channel)
            return False
        return bool(obj.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))

    def deliver_due(self, store: Store, *, now: datetime | None = None) -> DeliveryReport:
        """Send every due alert, oldest first; record each outcome as it happens."""
        report = DeliveryReport()
        for alert in store.due_alerts(now=now, limit=self.settings.batch):
            try:
                ok = self.send(alert)
                error = "" if ok else "the service did not accept the message"
            except Exception as exc:  # a plugin bug must not stop the other alerts
                ok, error = False, f"{type(exc).__name__} while sending"
            if ok:
                store.mark_sent(alert.id)
                report.sent += 1
                log.info("alert %s sent to %s", alert.alert_key, alert.channel)
                continue
            dead = alert.attempts + 1 >= self.settings.max_attempts
            store.mark_failed(alert.id, error=error, retry_in=self.backoff(alert.attempts),
                              dead=dead)
            report.failed += 1
            report.dead += int(dead)
            report.errors.append(f"alert {alert.alert_key} to {alert.channel}: {error}")
            log.warning("alert %s to %s failed (attempt %d)%s: %s", alert.alert_key,
                        alert.channel, alert.attempts + 1, ", dead-lettered" if dead else "",
                        error)
        return report
