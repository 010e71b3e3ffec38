"""The alert stage: deliver due outbox rows through apprise, never lost, never a flood.

Guarantees (docs/delivery.md):

- At-least-once overall, exactly once per process: a run claims a channel's
  due rows (owner + lease, in the transaction that reads them; see
  ``storage/outbox.py``) before it sends, marks each message in flight, and
  marks it sent right after apprise reports success (one transaction for the
  alerts it carried). Another process (``newsmon once`` beside the daemon)
  skips a channel a live run holds. A crash re-sends at most the one message
  in flight, and the next run logs that it may arrive twice. A message that
  went out but could not be marked sent (disk full, locked) is remembered in
  memory and retried as a *mark*, never sent again by this process.
- Prompt stop: ``should_stop`` is checked before every message and while
  waiting out a rate limit, so a stop waits for one send at most.
- Order: a channel's alerts go oldest first; after a failure the channel waits
  (exponential backoff with jitter, or the service's ``Retry-After`` when it is
  longer) and nothing newer overtakes the alert that failed.
- Bounded: a send is cut off after ``delivery.timeout`` (apprise's service
  deadline, and its connect and read timeouts ``cto``/``rto`` of every target
  whose URL sets none), a channel gets at most one message per ``rate_limit``
  (apprise's own per-service throttle is off: newsmon paces), one run stops
  starting sends after ``run_budget``.
- Causes: a failure is recorded as what happened (refused, DNS, TLS, timeout,
  HTTP status and body excerpt, SMTP reply, authentication refused), captured
  during the send (``delivery/causes.py``), secrets masked.
- No flood: digests, quiet hours, throttling and backlog collapsing are
  decided by ``monitor.delivery.pacing.plan_channel``, per message: a story's rows
  of one follow-up (all its topics) are one message, claimed, begun and marked sent together.
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
from typing import Any, Literal

import apprise
import requests

from monitor import notices
from monitor.config import ChannelConfig, DeliverySettings
from monitor.delivery import causes
from monitor.delivery.claims import describe_owner, new_owner, owner_gone
from monitor.delivery.pacing import (
    HELD_QUIET,
    HELD_THROTTLE,
    Due,
    message_groups,
    message_key,
    plan_channel,
    throttle_limit,
)
from monitor.delivery.render import Format, Message, Renderer, TemplateProblem
from monitor.delivery.routing import LOG_CHANNEL, admin_channels
from monitor.errors import DeliveryError, StorageError
from monitor.ingest.httpdates import retry_after_seconds
from monitor.logs import pin_leaky_loggers
from monitor.models import PendingAlert
from monitor.ports import Outbox
from monitor.records import ClaimedAlert

log = logging.getLogger(__name__)

# The default body cap of a single alert, whatever the service allows: an alert
# has at most three evidence sentences; a digest may use the service's full limit.
ALERT_BODY_CAP = 4000
# Due rows claimed per channel and run (more wait for the next run).
CLAIM_LIMIT = 1000


class ChannelError(DeliveryError):
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
    body: str = ""  # an excerpt, only of an error response (masked before use)


_RESPONSES: contextvars.ContextVar[list[HttpOutcome] | None] = contextvars.ContextVar(
    "newsmon_http_responses", default=None)


def install_response_capture() -> None:
    """Wrap ``requests.Session.send`` once (idempotent) to record responses.

    Only the status, Retry-After and (of an error response) a body excerpt are
    kept, only while a send is in progress in this context, and the failure's
    cause (``causes.record``); no URL or header is stored.
    """
    original = requests.Session.send
    if getattr(original, "_newsmon_capture", False):
        return

    @functools.wraps(original)
    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        sink = _RESPONSES.get()
        try:
            response = original(self, request, **kwargs)
        except requests.RequestException as exc:
            if sink is not None:
                causes.record(causes.describe(exc))
            raise
        if sink is not None:
            body = ""
            if response.status_code >= 400:
                with contextlib.suppress(Exception):
                    body = response.text[:400]
                causes.record(causes.http_cause(response.status_code, body))
            sink.append(HttpOutcome(response.status_code, response.headers.get("Retry-After"),
                                    body))
        return response

    send._newsmon_capture = True  # type: ignore[attr-defined]  # a marker attribute on the wrapper
    requests.Session.send = send  # type: ignore[method-assign]  # apprise exposes no hook: see the docstring


# --- results ---------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0  # alerts marked sent (a digest counts each alert it carried)
    failed: int = 0  # alerts whose attempt failed
    dead: int = 0
    held: int = 0  # alerts made to wait (digest, quiet hours, throttle)
    messages: int = 0  # messages sent
    errors: list[str] = field(default_factory=list)
    stopped: bool = False  # the run ended early because a stop was requested
    resent: int = 0  # messages sent again after another run was stopped while sending them
    skipped_channels: int = 0  # channels another live run was delivering to


@dataclass(frozen=True, slots=True)
class UnmarkedSend:
    """A message that went out but could not be marked sent: retried as a mark."""

    channel: str
    alert_ids: tuple[int, ...]
    kind: str
    sent_at: datetime
    keys: str


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

    wanted: Literal["text", "markdown", "html"]
    if channel.format == "auto":
        resolved = service.resolve_format(None)
        wanted = ("html" if resolved == apprise.NotifyFormat.HTML
                  else "markdown" if resolved == apprise.NotifyFormat.MARKDOWN else "text")
    else:
        wanted = channel.format
    if wanted == "markdown" and isinstance(service, NotifySlack):
        return "slack", str(apprise.NotifyFormat.MARKDOWN)
    return wanted, str({"html": apprise.NotifyFormat.HTML, "markdown": apprise.NotifyFormat.MARKDOWN,
                        "text": apprise.NotifyFormat.TEXT}[wanted])


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
        causes.install()
        pin_leaky_loggers()
        self.settings = settings
        self.channels = {c.name: c for c in channels}
        self.admin = admin_channels(channels)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._last_send: dict[str, float] = {}  # channel -> monotonic time of its last send
        self.owner = new_owner()  # the claim owner of this deliverer's runs
        self.claim_limit = CLAIM_LIMIT
        self._unmarked: list[UnmarkedSend] = []  # sent, not yet recorded: never send again
        # Set by the daemon when the stop deadline passed during a send: the thread
        # then records and logs nothing more (the claim makes the next start resend).
        self.abandoned = False
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
        self._tune(service, channel.url)
        fmt, body_format = _format_for(channel, service)
        body_limit = int(service.body_maxlen or 32768)
        if channel.max_length:
            body_limit = min(body_limit, channel.max_length)
        renderer = _renderer(channel, fmt, body_limit=body_limit,
                             title_limit=int(service.title_maxlen or 0))
        return Target(channel, notifier, renderer, body_format)

    def _tune(self, service: Any, url: str) -> None:
        """``delivery.timeout`` as the service's connect and read timeouts (unless the
        URL sets ``cto``/``rto`` itself): apprise's own 4 s read timeout would end
        every attempt at a service answering in 6 s. And no apprise throttle
        (5.5 s between two sends of one service object): ``rate_limit`` paces."""
        query = url.split("?", 1)[1] if "?" in url else ""
        given = {part.split("=", 1)[0].lower() for part in query.split("&") if part}
        if "cto" not in given:
            service.socket_connect_timeout = float(self.settings.timeout)
        if "rto" not in given:
            service.socket_read_timeout = float(self.settings.timeout)
        service.request_rate_per_sec = 0

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
            with causes.capturing() as capture:
                result = target.notifier.notify(
                    title=message.title, body=message.body, body_format=target.body_format,
                    timeout=self.settings.timeout)
        except Exception as exc:  # a plugin bug must not stop the other channels
            return SendResult(False, f"{type(exc).__name__} while sending")
        finally:
            _RESPONSES.reset(token)
        if result:
            return SendResult(True)
        failure = self._failure(result, sink, capture.best())
        masked = causes.mask_secrets(failure.error, target.config.url)
        return SendResult(False, masked, failure.retry_after, failure.status)

    def _failure(self, result: Any, responses: Sequence[HttpOutcome],
                 cause: str | None = None) -> SendResult:
        """Why a send failed, in words: the captured cause (refused, DNS, TLS, SMTP
        reply, HTTP status and body), else the timeout or status apprise reports."""
        status = getattr(result, "status", None)
        last = responses[-1] if responses else None
        wait = None
        for outcome in reversed(responses):
            wait = retry_after_seconds(outcome.retry_after)
            if wait is not None:
                break
        code = last.status if last is not None else None
        if status == apprise.AppriseResultStatus.TIMEOUT:
            after = f" (last seen: {cause})" if cause and last is None else ""
            return SendResult(False, f"timed out: no answer within {self.settings.timeout:g}s"
                              + after, wait, code)
        if cause:
            if wait:
                cause += f", Retry-After {wait:g}s"
            return SendResult(False, cause, wait, code)
        if last is None:
            return SendResult(False, "the send failed and apprise gave no reason"
                              " (run `newsmon alerts test <channel>` to see more)")
        if last.status < 400:
            return SendResult(False, f"the service refused the message (HTTP {last.status})",
                              wait, last.status)
        return SendResult(False, f"HTTP {last.status}" + (f", Retry-After {wait:g}s" if wait else ""),
                          wait, last.status)

    def _pace(self, channel: ChannelConfig, deadline: float,
              should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait out the channel's rate limit; False when that would pass the run's
        budget, or a stop was requested meanwhile (checked every 0.2 s)."""
        last = self._last_send.get(channel.name)
        if last is None:
            return True
        wait = last + channel.rate_limit - time.monotonic()
        if wait <= 0:
            return True
        if time.monotonic() + wait > deadline:
            return False
        while wait > 0:
            if should_stop():
                return False
            step = min(wait, 0.2)
            self._sleep(step)
            wait -= step
        return True

    # -- the delivery job ---------------------------------------------------------
    def deliver_due(self, outbox: Outbox, *, now: datetime | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> DeliveryReport:
        """Send what is due, channel by channel, oldest first; record each outcome.

        ``now`` fixes the clock for the schedule (tests); by default the real time.
        ``should_stop`` is asked before every message: a stop waits for one send.
        """
        fixed = now
        clock: Callable[[], datetime] = (lambda: fixed) if fixed else (lambda: datetime.now(UTC))
        report = DeliveryReport()
        deadline = time.monotonic() + self.settings.run_budget
        if not self.flush_marks(outbox, report):
            return report  # the database still refuses writes: send nothing more now
        for channel in outbox.due_channels(now=clock()):
            if should_stop():
                report.stopped = True
                break
            if report.messages >= self.settings.batch or time.monotonic() > deadline:
                break
            target = self.targets.get(channel)
            if target is None:
                self._orphaned(outbox, channel, clock(), report)
                continue
            self._deliver_channel(outbox, target, clock, deadline, report, should_stop)
        return report

    def flush_marks(self, outbox: Outbox, report: DeliveryReport | None = None) -> bool:
        """Record the sends that went out but could not be marked sent; True when none
        is left. They stay claimed by this deliverer meanwhile, so no run sends them."""
        while self._unmarked:
            send = self._unmarked[0]
            try:
                outbox.mark_delivered(send.channel, send.alert_ids, kind=send.kind,
                                      now=send.sent_at)
            except StorageError as exc:
                log.warning("still cannot mark %s on %s sent (%s): will retry the mark,"
                            " not the send", send.keys, send.channel, exc)
                return False
            self._unmarked.pop(0)
            if report is not None:
                report.sent += len(send.alert_ids)
            log.info("%s on %s marked sent (it went out at %s)", send.keys, send.channel,
                     send.sent_at.isoformat(timespec="seconds"))
        return True

    @property
    def unmarked(self) -> int:
        """Messages sent but not yet recorded as sent (held in memory)."""
        return len(self._unmarked)

    def _lease(self, now: datetime) -> datetime:
        """How long a claim holds: this run's budget plus one send, with a margin."""
        return now + timedelta(seconds=self.settings.run_budget + self.settings.timeout + 60)

    def _deliver_channel(self, outbox: Outbox, target: Target, clock: Callable[[], datetime],
                         deadline: float, report: DeliveryReport,
                         should_stop: Callable[[], bool] = lambda: False) -> None:
        cfg = target.config
        now = clock()
        state = outbox.channel_state(cfg.name)
        if state.blocked_until is not None and state.blocked_until > now:
            return  # backing off (or Retry-After): nothing overtakes the failed alert
        claimed = outbox.claim_due(cfg.name, self.owner, lease_until=self._lease(now), now=now,
                                   owner_gone=owner_gone, limit=self.claim_limit)
        if claimed is None:
            report.skipped_channels += 1
            log.debug("channel %s: another newsmon process is delivering to it", cfg.name)
            return
        open_ids = {c.alert.id for c in claimed}
        try:
            if len(claimed) >= self.claim_limit:
                # A full claim may end inside a story's message (some of its topics claimed, the
                # rest not): that message waits for the next run, whole, rather than go out in two.
                last = message_key(claimed[-1].alert)
                whole = [c for c in claimed if message_key(c.alert) != last]
                claimed = whole or claimed  # one message larger than a claim: send what there is
            self._send_claimed(outbox, target, claimed, open_ids, state, clock, deadline,
                               report, should_stop)
        finally:
            if open_ids:  # claimed, not sent, failed or held: free for the next run
                with contextlib.suppress(StorageError):
                    outbox.release_claims(self.owner, sorted(open_ids))

    def _send_claimed(self, outbox: Outbox, target: Target, claimed: Sequence[ClaimedAlert],
                      open_ids: set[int], state: Any, clock: Callable[[], datetime],
                      deadline: float, report: DeliveryReport,
                      should_stop: Callable[[], bool]) -> None:
        cfg = target.config
        now = clock()
        resent = {c.alert.id: c.resent_after for c in claimed if c.resent_after}
        for alert_id, previous in resent.items():
            key = next(c.alert.alert_key for c in claimed if c.alert.id == alert_id)
            log.warning("alert %s to %s: %s stopped while sending it; sending it again"
                        " (it may arrive twice)", key, cfg.name, describe_owner(previous))
        due = [Due(c.alert, c.held) for c in claimed]
        if target.notifier is None:  # the log channel: no schedule, one line per message
            messages = [(target.renderer.message(group), group, "alert")
                        for group in message_groups([d.alert for d in due])]
        else:
            messages = self._plan(outbox, target, due, now, report)
            held = {c.alert.id for c in claimed} - {a.id for _, alerts, _ in messages for a in alerts}
            open_ids -= held  # hold_alerts ended their claims
        last = state.last_sent_at
        if last is not None and cfg.name not in self._last_send:
            # After a restart the rate limit still counts the last message sent.
            ago = max((now - last).total_seconds(), 0.0)
            self._last_send[cfg.name] = time.monotonic() - ago
        recovered = False
        for message, alerts, kind in messages:
            if should_stop():
                report.stopped = True
                return
            if report.messages >= self.settings.batch or not self._pace(cfg, deadline,
                                                                        should_stop):
                report.stopped = report.stopped or should_stop()
                return
            ids = [a.id for a in alerts]
            keys = ", ".join(a.alert_key for a in alerts[:5]) \
                + (f" and {len(alerts) - 5} more" if len(alerts) > 5 else "")
            if not outbox.begin_send(ids, self.owner, lease_until=self._lease(clock()),
                                     now=clock()):
                log.warning("alert %s to %s: claim lost to another run; not sending it",
                            keys, cfg.name)
                open_ids.difference_update(ids)
                return
            result = self.send_message(target, message, [a.alert_key for a in alerts])
            if self.abandoned:
                open_ids.clear()  # keep the claims: the process is exiting
                return
            self._last_send[cfg.name] = time.monotonic()
            report.messages += 1
            report.resent += any(i in resent for i in ids)
            open_ids.difference_update(ids)
            if result.ok:
                sent_at = clock()
                try:
                    outbox.mark_delivered(cfg.name, ids, kind=kind, now=sent_at)
                except StorageError as exc:
                    # Sent, but not recorded: remember it, and mark it (not send it) later.
                    self._unmarked.append(UnmarkedSend(cfg.name, tuple(ids), kind, sent_at,
                                                       keys))
                    report.errors.append(f"alert {keys} to {cfg.name}: sent, not yet marked"
                                         f" sent ({exc})")
                    log.error("%s %s sent to %s but could not be marked sent (%s): it will be"
                              " marked later, not sent again", "digest of" if kind == "digest"
                              else "alert", keys, cfg.name, exc)
                    return
                report.sent += len(ids)
                log.info("%s %s sent to %s", "digest of" if kind == "digest" else "alert",
                         keys, cfg.name)
                if state.failing_notified and not recovered:
                    recovered = True
                    self._notify_recovered(outbox, cfg.name, state.failing_since)
                continue
            self._failed(outbox, cfg, alerts, result, state.failures + 1, clock(), report,
                         state=state)
            return  # the channel now waits; the rest keeps its place in the queue

    def _plan(self, outbox: Outbox, target: Target, due: Sequence[Due], now: datetime,
              report: DeliveryReport) -> list[tuple[Message, list[PendingAlert], str]]:
        """The messages to send now, oldest first; the rest is held in the outbox."""
        cfg = target.config
        limit, window = throttle_limit(cfg, self.settings)
        sent = (outbox.recent_messages(cfg.name, now - timedelta(seconds=window))
                if limit is not None else [])
        plan = plan_channel(cfg, due, now=now, settings=self.settings, sent_in_window=sent)
        outbox.hold_alerts(plan.hold)
        report.held += len(plan.hold)
        messages: list[tuple[Message, list[PendingAlert], str]] = []
        for group in plan.messages:  # one message per story follow-up (all its topics), else per row
            messages.append((target.renderer.message(group), group, "alert"))
        if plan.digest:
            reason = self._digest_reason(cfg, {d.alert.id: d.held for d in due}, plan.digest)
            for message, part in target.renderer.digest(plan.digest, reason=reason):
                messages.append((message, part, "digest"))
        messages.sort(key=lambda m: min(a.id for a in m[1]))
        return messages

    def _failed(self, outbox: Outbox, cfg: ChannelConfig, alerts: Sequence[PendingAlert],
                result: SendResult, failures: int, now: datetime, report: DeliveryReport,
                *, state: Any = None) -> None:
        """Record a failed message: the channel backs off; old or tried-out alerts die;
        a channel failing longer than ``channel_failing_after`` is reported once."""
        delay = self._retry_delay(failures, result)
        age_limit = timedelta(seconds=self.settings.max_age)
        # An outage (the channel down) must not kill alerts by attempts: they wait
        # up to max_age. A message the service refuses dies after max_attempts.
        dead = [a for a in alerts if now - a.created_at > age_limit
                or (result.permanent and a.attempts + 1 >= self.settings.max_attempts)]
        outbox.mark_attempt_failed(cfg.name, [a.id for a in alerts], error=result.error,
                                  retry_at=now + timedelta(seconds=delay),
                                  dead_ids=[a.id for a in dead], now=now)
        report.failed += len(alerts)
        report.dead += len(dead)
        keys = ", ".join(a.alert_key for a in alerts[:5]) + ("..." if len(alerts) > 5 else "")
        report.errors.append(f"alert {keys} to {cfg.name}: {result.error}")
        log.warning("delivery to %s failed (%s): %s; retry in %.0fs%s", cfg.name, keys,
                    result.error, delay, f", {len(dead)} dead-lettered" if dead else "")
        if dead:
            self._report_dead(outbox, cfg.name, dead, result.error)
        if state is not None and not state.failing_notified:
            since = state.failing_since or now
            if (now - since).total_seconds() >= self.settings.channel_failing_after:
                self._notify_failing(outbox, cfg.name, since, now, failures, result.error)

    def _others(self, channel: str) -> list[str]:
        """Where a notice about ``channel``'s health goes: the other admin channels (none:
        the log line alone says it; a notice queued for the log would only repeat it)."""
        return [c for c in self.admin if c not in (channel, LOG_CHANNEL)]

    def _notify_failing(self, outbox: Outbox, channel: str, since: datetime, now: datetime,
                        failures: int, error: str) -> None:
        notice = notices.channel_failing(channel, failing_since=since, now=now,
                                         failures=failures, error=error)
        if self._others(channel):
            outbox.enqueue_notice(notice.key, notice.title, notice.body, self._others(channel),
                                  severity=notice.severity)
        outbox.set_failing_notified(channel)
        log.error("channel %s has failed every send since %s (%d in a row): %s", channel,
                  since.isoformat(timespec="seconds"), failures, error)

    def _notify_recovered(self, outbox: Outbox, channel: str, since: datetime | None) -> None:
        notice = notices.channel_recovered(channel, failing_since=since)
        if self._others(channel):
            with contextlib.suppress(StorageError):
                outbox.enqueue_notice(notice.key, notice.title, notice.body,
                                      self._others(channel), severity=notice.severity)
        log.info("channel %s recovered (failing since %s)", channel,
                 since.isoformat(timespec="seconds") if since else "?")

    def _orphaned(self, outbox: Outbox, channel: str, now: datetime, report: DeliveryReport) -> None:
        """Alerts for a channel no longer in the config: they fail until they die."""
        entries = [a for a, _ in outbox.due_outbox(channel, now=now, limit=self.settings.batch)]
        if not entries:
            return
        state = outbox.channel_state(channel)
        result = SendResult(False, f"channel {channel} is no longer configured", status=404)
        fake = ChannelConfig(name=channel, url="none://")
        self._failed(outbox, fake, entries, result, state.failures + 1, now, report)

    def _report_dead(self, outbox: Outbox, channel: str, dead: Sequence[PendingAlert],
                     error: str) -> None:
        """Tell the admin channels (one notice per batch of dead alerts)."""
        matches = [a for a in dead if a.kind != "notice"]
        for lost in (a for a in dead if a.kind == "notice"):
            # A notice that cannot be delivered is not reported by another notice
            # (its channel may be the admin channel itself): the log has it.
            log.error("notice %s to %s dead-lettered: %s", lost.alert_key, channel, error)
        if not matches:
            return
        notice = notices.alerts_dead_lettered(channel, [a.alert_key for a in matches],
                                              first_id=matches[0].id, error=error)
        targets = [c for c in self.admin if c != channel] or [LOG_CHANNEL]
        outbox.enqueue_notice(notice.key, notice.title, notice.body, targets,
                              severity=notice.severity)

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
