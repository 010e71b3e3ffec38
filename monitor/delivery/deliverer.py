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

Sending one message through apprise (URL parsing without leaking tokens, formats,
timeouts, Retry-After capture, failure causes) is ``monitor.delivery.channels``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor import notices
from monitor.config import ChannelConfig, DeliverySettings
from monitor.delivery import causes
from monitor.delivery.channels import (
    ChannelError,
    SendResult,
    Target,
    build_target,
    install_response_capture,
    mask_channel_url,
    send,
)
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
from monitor.delivery.render import Message, Renderer
from monitor.delivery.routing import LOG_CHANNEL, admin_channels
from monitor.errors import StorageError
from monitor.logs import pin_leaky_loggers
from monitor.models import PendingAlert
from monitor.ports import Outbox
from monitor.records import ClaimedAlert

# ChannelError and mask_channel_url are imported from here by the CLI (and ChannelError
# by tests/test_public_api.py as its old home): they stay importable from this module.
__all__ = ["ALERT_BODY_CAP", "CLAIM_LIMIT", "ChannelError", "Deliverer", "DeliveryReport",
           "SendResult", "Target", "UnmarkedSend", "mask_channel_url"]

log = logging.getLogger(__name__)

# The default body cap of a single alert, whatever the service allows: an alert
# has at most three evidence sentences; a digest may use the service's full limit.
ALERT_BODY_CAP = 4000
# Due rows claimed per channel and run (more wait for the next run).
CLAIM_LIMIT = 1000


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


# --- the deliverer ---------------------------------------------------------------


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
        return build_target(channel, self.settings.timeout)

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
        return send(target, message, self.settings.timeout)

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
