"""The alert stage: deliver due outbox rows through apprise, never lost, never a flood.

Guarantees (docs/delivery.md):

- At-least-once: an alert is marked sent only after apprise reports success
  (one transaction for every alert a message carried); a crash before that
  means it is sent again, and every message names its alert ids.
- Order: a channel's alerts go oldest first; after a failure the channel waits
  (exponential backoff with jitter, or the service's ``Retry-After`` when it is
  longer) and nothing newer overtakes the alert that failed.
- Bounded: a send is cut off after ``delivery.timeout`` (apprise's service
  deadline), a channel gets at most one message per ``rate_limit``, one run
  stops starting sends after ``run_budget``.
- No flood: digests, quiet hours, throttling and backlog collapsing are
  decided by ``monitor.schedule.plan_channel``.
- Dead letters: an alert still failing after ``max_attempts`` or ``max_age``
  is dead-lettered and reported on the admin channels.

Secrets: errors and logs name the channel, never its URL; apprise's own
logger stays at INFO or above (``monitor.logs``).

Retry-After: apprise neither honours nor exposes it, so newsmon reads it from
the HTTP response itself. ``requests.Session.send`` (which every HTTP plugin of
apprise goes through, whether it calls ``requests.post`` or a session) is
wrapped once to copy the status and ``Retry-After`` of each response into a
context-local list; apprise runs each service in a worker thread with a copy
of the caller's context (``submit_with_context``), so the list set around one
``notify()`` sees exactly that call's responses. Outside such a call the
wrapper does nothing. Targets that are not HTTP (SMTP, XMPP, MQTT...) have no
Retry-After: they get the exponential backoff alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import apprise
import requests

from monitor.config import ChannelConfig, DeliverySettings
from monitor.delivery.pacing import HELD_QUIET, HELD_THROTTLE, Due, plan_channel, throttle_limit
from monitor.delivery.render import Format, Message, Renderer, TemplateProblem
from monitor.delivery.routing import LOG_CHANNEL, admin_channels
from monitor.ingest.httpdates import retry_after_seconds
from monitor.logs import pin_leaky_loggers
from monitor.models import PendingAlert
from monitor.storage.store import Store

log = logging.getLogger(__name__)

# The default body cap of a single alert, whatever the service allows: an alert
# has at most three evidence sentences; a digest may use the service's full limit.
ALERT_BODY_CAP = 4000
ADMIN_NOTICE_IDS = 20  # dead alert keys listed in one admin notice


class ChannelError(Exception):
    """A channel URL apprise cannot use. The message never holds the URL."""


def mask_channel_url(url: str) -> str:
    """``slack://T0/B0/secret`` → ``slack://****`` (scheme only): safe to show."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"{scheme}://****"


class _Collector(logging.Filter):
    """Keeps the messages of the records it stops."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return False


@contextlib.contextmanager
def _apprise_silenced() -> Iterator[list[str]]:
    """Stop apprise's log records while a URL is parsed, and hand their text back.

    apprise logs a URL it cannot parse whole, or its tokens one by one
    (``invalid Slack (third) Token (C...)``), at ERROR: no redaction of known
    values catches a token alone. The caller masks them (``mask_tokens``) and
    puts the hint in its own error. Only at start-up and on reload.
    """
    logger = logging.getLogger("apprise")
    collector = _Collector()
    logger.addFilter(collector)
    try:
        yield collector.messages
    finally:
        logger.removeFilter(collector)


def mask_tokens(text: str, url: str) -> str:
    """``text`` with every part of ``url`` (tokens, user, password, host, path) masked."""
    rest = url.split("://", 1)[1] if "://" in url else url
    parts = {url, rest, *(p for p in re.split(r"[/:@?&=#,+]+", rest) if len(p) >= 3)}
    for part in sorted(parts, key=len, reverse=True):
        text = text.replace(part, "****")
    # apprise shortens long values (C...T): mask what is left of any URL.
    return re.sub(r"\b([a-z][a-z0-9+.-]*)://\S+", r"\1://****", text)


# --- Retry-After capture ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    status: int
    retry_after: str | None


_RESPONSES: contextvars.ContextVar[list[HttpOutcome] | None] = contextvars.ContextVar(
    "newsmon_http_responses", default=None)


def install_response_capture() -> None:
    """Wrap ``requests.Session.send`` once (idempotent) to record responses.

    Only the status and Retry-After are kept, only while ``capture_responses``
    is active in this context; no URL, header or body is stored.
    """
    original = requests.Session.send
    if getattr(original, "_newsmon_capture", False):
        return

    @functools.wraps(original)
    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        response = original(self, request, **kwargs)
        sink = _RESPONSES.get()
        if sink is not None:
            sink.append(HttpOutcome(response.status_code, response.headers.get("Retry-After")))
        return response

    send._newsmon_capture = True  # type: ignore[attr-defined]
    requests.Session.send = send  # type: ignore[method-assign]


# --- results ---------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0  # alerts marked sent (a digest counts each alert it carried)
    failed: int = 0  # alerts whose attempt failed
    dead: int = 0
    held: int = 0  # alerts made to wait (digest, quiet hours, throttle)
    messages: int = 0  # messages sent
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str = ""
    retry_after: float | None = None  # seconds the service asked us to wait
    status: int | None = None

    @property
    def permanent(self) -> bool:
        """The service refused this message (a 4xx but 408/425/429): retrying the
        same message is unlikely to help, so it counts towards ``max_attempts``.
        Outages (5xx, timeouts, refused connections, 429) only age an alert."""
        return self.status is not None and 400 <= self.status < 500 \
            and self.status not in (408, 425, 429)


@dataclass
class Target:
    """One configured channel, ready to send."""

    config: ChannelConfig
    notifier: apprise.Apprise | None  # None: the log channel
    renderer: Renderer
    body_format: str | None  # passed to apprise so it converts nothing it need not


# --- the deliverer ---------------------------------------------------------------


def _format_for(channel: ChannelConfig, service: Any) -> tuple[Format, str]:
    """(our format, apprise body_format) for a channel's service."""
    from apprise.plugins.slack import NotifySlack

    wanted = channel.format
    if wanted == "auto":
        resolved = service.resolve_format(None)
        wanted = {apprise.NotifyFormat.HTML: "html",
                  apprise.NotifyFormat.MARKDOWN: "markdown"}.get(resolved, "text")
    if wanted == "markdown" and isinstance(service, NotifySlack):
        return "slack", apprise.NotifyFormat.MARKDOWN
    return wanted, {"html": apprise.NotifyFormat.HTML, "markdown": apprise.NotifyFormat.MARKDOWN,
                    "text": apprise.NotifyFormat.TEXT}[wanted]


def _renderer(channel: ChannelConfig, fmt: Format, *, body_limit: int,
              title_limit: int) -> Renderer:
    try:
        return Renderer(fmt, body_limit=body_limit, title_limit=title_limit,
                        title_template=channel.title_template,
                        body_template=channel.body_template,
                        digest_template=channel.digest_template)
    except TemplateProblem as exc:
        raise ChannelError(f"channel {channel.name}: {exc}") from None


class Deliverer:
    """Sends due alerts, one apprise object per channel, built once."""

    def __init__(self, channels: Sequence[ChannelConfig], settings: DeliverySettings,
                 *, rng: random.Random | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        install_response_capture()
        pin_leaky_loggers()
        self.settings = settings
        self.channels = {c.name: c for c in channels}
        self.admin = admin_channels(channels)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._last_send: dict[str, float] = {}  # channel -> monotonic time of its last send
        self.targets: dict[str, Target] = {}
        errors = []
        for channel in channels:
            try:
                self.targets[channel.name] = self._target(channel)
            except ChannelError as exc:
                errors.append(str(exc))
        if errors:
            raise ChannelError("; ".join(errors))
        log_channel = ChannelConfig(name=LOG_CHANNEL, url="log://", rate_limit=0)
        self.targets.setdefault(LOG_CHANNEL, Target(
            log_channel, None, Renderer("text", body_limit=ALERT_BODY_CAP, title_limit=250), None))

    def _target(self, channel: ChannelConfig) -> Target:
        # A service deadline covers the whole send, retries and a slow-dripping
        # response included (apprise stops waiting and reports TIMEOUT).
        asset = apprise.AppriseAsset(service_timeout=self.settings.timeout)
        notifier = apprise.Apprise(asset=asset)
        with _apprise_silenced() as said:
            added = notifier.add(channel.url)
        if not added:
            hints = "; ".join(dict.fromkeys(mask_tokens(m, channel.url) for m in said))
            raise ChannelError(
                f"channel {channel.name}: apprise cannot use the URL {mask_channel_url(channel.url)}"
                " (check the scheme and the tokens)" + (f": {hints}" if hints else ""))
        service = notifier[0]
        fmt, body_format = _format_for(channel, service)
        body_limit = int(service.body_maxlen or 32768)
        if channel.max_length:
            body_limit = min(body_limit, channel.max_length)
        renderer = _renderer(channel, fmt, body_limit=body_limit,
                             title_limit=int(service.title_maxlen or 0))
        return Target(channel, notifier, renderer, body_format)

    # -- policy -------------------------------------------------------------------
    def backoff(self, failures: int) -> float:
        """Seconds before the next try after ``failures`` consecutive failures (≥ 1)."""
        base = min(self.settings.retry_max,
                   self.settings.retry_base * (2 ** max(failures - 1, 0)))
        return base * (0.5 + self._rng.random() / 2)  # jitter: spread retries of many alerts

    def _retry_delay(self, failures: int, result: SendResult) -> float:
        delay = self.backoff(failures)
        if result.retry_after is not None:
            delay = max(delay, min(result.retry_after, self.settings.retry_after_max))
        return delay

    # -- sending ------------------------------------------------------------------
    def send_message(self, target: Target, message: Message, keys: Sequence[str] = ()) -> SendResult:
        """Send one message to one channel; bounded in time; never raises."""
        if target.notifier is None:  # the log channel
            log.info("ALERT %s %s | %s", ",".join(keys), message.title,
                     message.body.replace("\n", " | "))
            return SendResult(True)
        sink: list[HttpOutcome] = []
        token = _RESPONSES.set(sink)
        try:
            result = target.notifier.notify(
                title=message.title, body=message.body, body_format=target.body_format,
                timeout=self.settings.timeout)
        except Exception as exc:  # a plugin bug must not stop the other channels
            return SendResult(False, f"{type(exc).__name__} while sending")
        finally:
            _RESPONSES.reset(token)
        if result:
            return SendResult(True)
        return self._failure(result, sink)

    def _failure(self, result: Any, responses: Sequence[HttpOutcome]) -> SendResult:
        """Why a send failed, in words with no secret: HTTP status, timeout, refusal."""
        status = getattr(result, "status", None)
        if status == apprise.AppriseResultStatus.TIMEOUT:
            return SendResult(False, f"no answer within {self.settings.timeout:g}s (timed out)")
        last = responses[-1] if responses else None
        if last is None:
            return SendResult(False, "the service did not accept the message")
        wait = None
        for outcome in reversed(responses):
            wait = retry_after_seconds(outcome.retry_after)
            if wait is not None:
                break
        if last.status < 400:
            return SendResult(False, f"the service did not accept the message (HTTP {last.status})",
                              wait, last.status)
        return SendResult(False, f"HTTP {last.status}" + (f", Retry-After {wait:g}s" if wait else ""),
                          wait, last.status)

    def _pace(self, channel: ChannelConfig, deadline: float) -> bool:
        """Wait out the channel's rate limit; False when that would pass the run's budget."""
        last = self._last_send.get(channel.name)
        if last is None:
            return True
        wait = last + channel.rate_limit - time.monotonic()
        if wait <= 0:
            return True
        if time.monotonic() + wait > deadline:
            return False
        self._sleep(wait)
        return True

    # -- the delivery job ---------------------------------------------------------
    def deliver_due(self, store: Store, *, now: datetime | None = None) -> DeliveryReport:
        """Send what is due, channel by channel, oldest first; record each outcome.

        ``now`` fixes the clock for the schedule (tests); by default the real time.
        """
        fixed = now
        clock: Callable[[], datetime] = (lambda: fixed) if fixed else (lambda: datetime.now(UTC))
        report = DeliveryReport()
        deadline = time.monotonic() + self.settings.run_budget
        for channel in store.due_channels(now=clock()):
            if report.messages >= self.settings.batch or time.monotonic() > deadline:
                break
            target = self.targets.get(channel)
            if target is None:
                self._orphaned(store, channel, clock(), report)
                continue
            self._deliver_channel(store, target, clock, deadline, report)
        return report

    def _deliver_channel(self, store: Store, target: Target, clock: Callable[[], datetime],
                         deadline: float, report: DeliveryReport) -> None:
        cfg = target.config
        now = clock()
        state = store.channel_state(cfg.name)
        if state["blocked_until"] is not None and state["blocked_until"] > now:
            return  # backing off (or Retry-After): nothing overtakes the failed alert
        due = [Due(a, held) for a, held in store.due_outbox(cfg.name, now=now)]
        if target.notifier is None:  # the log channel: no schedule, one line each
            messages = [(target.renderer.alert(d.alert), [d.alert], "alert") for d in due]
        else:
            messages = self._plan(store, target, due, now, report)
        last = state["last_sent_at"]
        if last is not None and cfg.name not in self._last_send:
            # After a restart the rate limit still counts the last message sent.
            ago = max((now - last).total_seconds(), 0.0)
            self._last_send[cfg.name] = time.monotonic() - ago
        for message, alerts, kind in messages:
            if report.messages >= self.settings.batch or not self._pace(cfg, deadline):
                return
            result = self.send_message(target, message, [a.alert_key for a in alerts])
            self._last_send[cfg.name] = time.monotonic()
            report.messages += 1
            ids = [a.id for a in alerts]
            if result.ok:
                store.mark_delivered(cfg.name, ids, kind=kind, now=clock())
                report.sent += len(ids)
                log.info("%s %s sent to %s", "digest of" if kind == "digest" else "alert",
                         ", ".join(a.alert_key for a in alerts[:5])
                         + (f" and {len(alerts) - 5} more" if len(alerts) > 5 else ""), cfg.name)
                continue
            self._failed(store, cfg, alerts, result, state["failures"] + 1, clock(), report)
            return  # the channel now waits; the rest keeps its place in the queue

    def _plan(self, store: Store, target: Target, due: Sequence[Due], now: datetime,
              report: DeliveryReport) -> list[tuple[Message, list[PendingAlert], str]]:
        """The messages to send now, oldest first; the rest is held in the store."""
        cfg = target.config
        limit, window = throttle_limit(cfg, self.settings)
        sent = (store.recent_messages(cfg.name, now - timedelta(seconds=window))
                if limit is not None else [])
        plan = plan_channel(cfg, due, now=now, settings=self.settings, sent_in_window=sent)
        store.hold_alerts(plan.hold)
        report.held += len(plan.hold)
        messages: list[tuple[Message, list[PendingAlert], str]] = []
        for alert in plan.single:
            messages.append((target.renderer.alert(alert), [alert], "alert"))
        if plan.digest:
            reason = self._digest_reason(cfg, {d.alert.id: d.held for d in due}, plan.digest)
            for message, part in target.renderer.digest(plan.digest, reason=reason):
                messages.append((message, part, "digest"))
        messages.sort(key=lambda m: min(a.id for a in m[1]))
        return messages

    def _failed(self, store: Store, cfg: ChannelConfig, alerts: Sequence[PendingAlert],
                result: SendResult, failures: int, now: datetime, report: DeliveryReport) -> None:
        """Record a failed message: the channel backs off; old or tried-out alerts die."""
        delay = self._retry_delay(failures, result)
        age_limit = timedelta(seconds=self.settings.max_age)
        # An outage (the channel down) must not kill alerts by attempts: they wait
        # up to max_age. A message the service refuses dies after max_attempts.
        dead = [a for a in alerts if now - a.created_at > age_limit
                or (result.permanent and a.attempts + 1 >= self.settings.max_attempts)]
        store.mark_attempt_failed(cfg.name, [a.id for a in alerts], error=result.error,
                                  retry_at=now + timedelta(seconds=delay),
                                  dead_ids=[a.id for a in dead])
        report.failed += len(alerts)
        report.dead += len(dead)
        keys = ", ".join(a.alert_key for a in alerts[:5]) + ("..." if len(alerts) > 5 else "")
        report.errors.append(f"alert {keys} to {cfg.name}: {result.error}")
        log.warning("delivery to %s failed (%s): %s; retry in %.0fs%s", cfg.name, keys,
                    result.error, delay, f", {len(dead)} dead-lettered" if dead else "")
        if dead:
            self._report_dead(store, cfg.name, dead, result.error)

    def _orphaned(self, store: Store, channel: str, now: datetime, report: DeliveryReport) -> None:
        """Alerts for a channel no longer in the config: they fail until they die."""
        entries = [a for a, _ in store.due_outbox(channel, now=now, limit=self.settings.batch)]
        if not entries:
            return
        state = store.channel_state(channel)
        result = SendResult(False, f"channel {channel} is no longer configured", status=404)
        fake = ChannelConfig(name=channel, url="none://")
        self._failed(store, fake, entries, result, state["failures"] + 1, now, report)

    def _report_dead(self, store: Store, channel: str, dead: Sequence[PendingAlert],
                     error: str) -> None:
        """Tell the admin channels (one notice per batch of dead alerts)."""
        matches = [a for a in dead if a.kind != "notice"]
        for notice in (a for a in dead if a.kind == "notice"):
            # A notice that cannot be delivered is not reported by another notice
            # (its channel may be the admin channel itself): the log has it.
            log.error("notice %s to %s dead-lettered: %s", notice.alert_key, channel, error)
        if not matches:
            return
        keys = [a.alert_key for a in matches]
        listed = ", ".join(keys[:ADMIN_NOTICE_IDS]) + (
            f" and {len(keys) - ADMIN_NOTICE_IDS} more" if len(keys) > ADMIN_NOTICE_IDS else "")
        body = (f"{len(keys)} alert(s) to channel {channel} could not be delivered and were"
                f" dead-lettered ({error}): {listed}. Re-queue with: newsmon alerts retry --dead")
        targets = [c for c in self.admin if c != channel] or [LOG_CHANNEL]
        store.enqueue_notice(f"dead-{channel}-{matches[0].id}",
                             f"Alerts to {channel} could not be delivered", body, targets)

    # -- tools ----------------------------------------------------------------------
    def test(self, channel: str, *, now: datetime | None = None) -> SendResult:
        """Send a test message to a channel (``newsmon alerts test``)."""
        target = self.targets.get(channel)
        if target is None:
            return SendResult(False, f"no channel named {channel}")
        moment = now or datetime.now(UTC)
        alert = PendingAlert(
            id=0, alert_key=f"test-{moment:%Y%m%dT%H%M%S}", channel=channel, topic="newsmon",
            severity="normal", title="newsmon test message", url=None, source="newsmon",
            published=moment, score=0.0, threshold=0.0, evidence=(), terms=(),
            created_at=moment, kind="notice",
            body=f"This is a test message from newsmon to channel {channel}."
                 " If you can read it, delivery works.")
        return self.send_message(target, target.renderer.alert(alert), [alert.alert_key])

    def _digest_reason(self, cfg: ChannelConfig, held: dict[int, str | None],
                       alerts: Iterable[PendingAlert]) -> str:
        """The digest's first line: why these alerts come together."""
        reasons = {held.get(a.id) for a in alerts}
        if HELD_QUIET in reasons:
            return "Quiet hours are over"
        if HELD_THROTTLE in reasons:
            limit, window = throttle_limit(cfg, self.settings)
            return f"More than {limit} alerts within {window / 60:g} min"
        if cfg.digest != "immediate":
            return f"Digest ({cfg.digest})"
        return "Backlog after a delay"
