"""The outbox: alerts and notices waiting for delivery, messages sent, channel backoff.

Claims (docs/delivery.md): before a row is sent it is claimed by one delivery
run (``claimed_by`` = the run's owner id, ``claimed_until`` = the lease's
expiry), in the same ``BEGIN IMMEDIATE`` transaction that reads it, so two
processes on one database never send the same row. A channel whose rows a
live owner holds is skipped whole by the others (order and rate limits stay
per channel). Just before a send the row is marked in flight
(``sending_since``); marking it sent, failed or held clears the claim. A claim
whose lease expired, or whose owner is gone (``owner_gone``), is taken over;
a row that was in flight then is reported (``ClaimedAlert.resent_after``):
it is the one message a crash can send twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from monitor.errors import StorageError
from monitor.identity import notice_alert_key
from monitor.models import EvidenceSentence, PendingAlert
from monitor.records import ChannelHealthRow, ChannelState, ClaimedAlert
from monitor.storage.db import Connection, errors, iso, iso_up, last_id, parse_iso, utcnow

NOTICE_TOPIC = "_newsmon"  # the topic of daemon-health notices in the outbox
_CLEAR_CLAIM = "claimed_by = NULL, claimed_until = NULL, sending_since = NULL"
# A due row with its article's language (the message names it); notices have no article.
_SELECT_DUE = ("SELECT alerts.*, (SELECT language FROM articles WHERE articles.id = alerts.article_id)"
               " AS article_language FROM alerts")


class _LostClaim(StorageError):
    """Another run took over a claim: undo the in-flight marks."""


def evidence_json(evidence: Sequence[EvidenceSentence]) -> str:
    return json.dumps([asdict(e) for e in evidence], ensure_ascii=False)


def evidence_from_json(text: str | None) -> tuple[EvidenceSentence, ...]:
    if not text:
        return ()
    return tuple(
        EvidenceSentence(field=e["field"], text=e["text"], marked=e["marked"],
                         terms=tuple(e.get("terms", ())))
        for e in json.loads(text)
    )


def pending_alert(row: dict[str, Any]) -> PendingAlert:
    """An ``alerts`` row read back for delivery."""
    return PendingAlert(
        id=row["id"], alert_key=row["alert_key"], channel=row["channel"], topic=row["topic"],
        severity=row["severity"] or "normal", title=row["title"] or "", url=row["url"],
        source=row["source"] or "", published=parse_iso(row["published"]),
        score=row["score"] or 0.0, threshold=row["threshold"] or 0.0,
        evidence=evidence_from_json(row["evidence"]),
        terms=tuple(json.loads(row["terms"] or "[]")),
        created_at=parse_iso(row["created_at"]) or utcnow(), attempts=row["attempts"] or 0,
        kind=row["kind"] or "match", body=row["body"] or "",
        language=row.get("article_language"), story_id=row.get("story_id"),
    )


class OutboxRepository:
    """Reads and writes of ``alerts``, ``deliveries`` and ``channel_state``."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._db = connection.db

    def enqueue_notice(self, key: str, title: str, body: str, channels: Sequence[str],
                       *, severity: str = "high") -> list[int]:
        """Queue a daemon-health message (feed failing, alert dead, database error).

        ``key`` identifies the event (e.g. ``feed-failing-3-2026-11-28T10:00``):
        a notice with a key already queued is not queued again, so an ongoing
        problem raises one message, not one per poll.
        """
        now = iso(utcnow())
        ids: list[int] = []
        with errors("queueing a notice"), self._conn.write():
            for channel in channels:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO alerts (alert_key, channel, topic, severity, title,"
                    " source, kind, body, status, attempts, next_attempt_at, created_at, score,"
                    " threshold, terms, evidence)"
                    " VALUES (?,?,?,?,?,'newsmon','notice',?,'pending',0,?,?,0,0,'[]','[]')",
                    (notice_alert_key(key, channel), channel, NOTICE_TOPIC, severity, title, body,
                     now, now),
                )
                if cur.rowcount:
                    ids.append(last_id(cur))
        return ids

    def counts(self) -> dict[str, int]:
        """How many outbox rows are in each status (pending, sent, dead)."""
        with errors("reading the outbox"):
            return {r[0]: r[1] for r in self._db.execute(
                "SELECT status, COUNT(*) FROM alerts GROUP BY status")}

    def due_channels(self, *, now: datetime | None = None) -> list[str]:
        """Channels with at least one due pending alert, by their oldest due alert."""
        with errors("reading the outbox"):
            return [r[0] for r in self._db.execute(
                "SELECT channel FROM alerts WHERE status = 'pending' AND"
                " (next_attempt_at IS NULL OR next_attempt_at <= ?)"
                " GROUP BY channel ORDER BY MIN(id)", (iso(now or utcnow()),))]

    def due_outbox(self, channel: str, *, now: datetime | None = None,
                   limit: int = 1000) -> list[tuple[PendingAlert, str | None]]:
        """One channel's due pending alerts, oldest first, each with why it waited."""
        with errors("reading the outbox"):
            rows = list(self._db.query(
                f"{_SELECT_DUE} WHERE status = 'pending' AND channel = ? AND"
                " (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
                (channel, iso(now or utcnow()), limit)))
        return [(pending_alert(r), r.get("held")) for r in rows]

    def claim_due(self, channel: str, owner: str, *, lease_until: datetime,
                  now: datetime | None = None, limit: int = 1000,
                  owner_gone: Callable[[str], bool] = lambda _owner: False,
                  ) -> list[ClaimedAlert] | None:
        """Claim one channel's due pending alerts for ``owner``, oldest first.

        One ``BEGIN IMMEDIATE`` transaction reads and claims, so no other process
        can claim the same rows in between. None when another owner holds a live
        claim on the channel (its lease not expired, the owner not gone): that
        run is sending to it, and this one must not overtake or double it.
        """
        moment = iso(now or utcnow())
        with errors(f"claiming alerts on {channel}"), self._conn.write():
            # PostgreSQL: claims on one channel one at a time (SQLite's file lock does it)
            self._conn.lock_key("claim", channel)
            holders = [r[0] for r in self._db.execute(
                "SELECT DISTINCT claimed_by FROM alerts WHERE channel = ? AND status = 'pending'"
                " AND claimed_by IS NOT NULL AND claimed_by != ? AND claimed_until > ?",
                (channel, owner, moment))]
            if any(not owner_gone(holder) for holder in holders):
                return None
            rows = list(self._db.query(
                f"{_SELECT_DUE} WHERE status = 'pending' AND channel = ? AND"
                " (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?"
                f"{self._conn.skip_locked('alerts')}",
                (channel, moment, limit)))
            self._db.conn.executemany(
                "UPDATE alerts SET claimed_by = ?, claimed_until = ?, sending_since = NULL"
                " WHERE id = ?", [(owner, iso_up(lease_until), r["id"]) for r in rows])
        return [ClaimedAlert(
            pending_alert(r), r.get("held"),
            resent_after=r["claimed_by"] if r.get("sending_since") and r.get("claimed_by")
            and r["claimed_by"] != owner else None) for r in rows]

    def begin_send(self, alert_ids: Sequence[int], owner: str, *, lease_until: datetime,
                   now: datetime | None = None) -> bool:
        """Mark ``alert_ids`` in flight (and renew their lease) just before a send.

        False when ``owner`` no longer holds every one of them (its lease expired
        and another run took them over): the message must not be sent.
        """
        moment = iso(now or utcnow())
        try:
            with errors("marking alerts in flight"), self._conn.write():
                changed = 0
                for alert_id in alert_ids:
                    changed += self._db.execute(
                        "UPDATE alerts SET sending_since = ?, claimed_until = ? WHERE id = ?"
                        " AND claimed_by = ? AND status = 'pending'",
                        (moment, iso_up(lease_until), alert_id, owner)).rowcount
                if changed != len(alert_ids):
                    raise _LostClaim  # rolls the partial marks back
        except _LostClaim:
            return False
        return True

    def release_claims(self, owner: str, alert_ids: Sequence[int] | None = None) -> int:
        """Give back ``owner``'s claims (those of ``alert_ids``, or all) that were not sent."""
        with errors("releasing claims"), self._conn.write():
            if alert_ids is None:
                cur = self._db.execute(
                    "UPDATE alerts SET claimed_by = NULL, claimed_until = NULL,"
                    " sending_since = NULL WHERE claimed_by = ?", (owner,))
                return int(cur.rowcount)
            count = 0
            for alert_id in alert_ids:
                count += self._db.execute(
                    "UPDATE alerts SET claimed_by = NULL, claimed_until = NULL,"
                    " sending_since = NULL WHERE claimed_by = ? AND id = ?",
                    (owner, alert_id)).rowcount
            return count

    def hold_alerts(self, holds: dict[int, tuple[datetime, str]]) -> None:
        """Make alerts wait (digest, quiet hours, throttle) without counting an attempt."""
        if not holds:
            return
        with errors("holding alerts"), self._conn.write():
            self._db.conn.executemany(
                "UPDATE alerts SET next_attempt_at = ?, held = ?, claimed_by = NULL,"
                " claimed_until = NULL, sending_since = NULL WHERE id = ? AND"
                " status = 'pending'",
                [(iso_up(until), why, alert_id) for alert_id, (until, why) in holds.items()])

    def mark_delivered(self, channel: str, alert_ids: Sequence[int], *, kind: str,
                       now: datetime | None = None) -> int:
        """Record one message that carried ``alert_ids``: all sent, in one transaction.

        Also resets the channel's failure count. Returns the message's id.
        """
        sent_at = iso(now or utcnow())
        with errors(f"marking alerts sent on {channel}"), self._conn.write():
            cur = self._db.execute(
                "INSERT INTO deliveries (channel, kind, alerts, sent_at) VALUES (?,?,?,?)",
                (channel, kind, len(alert_ids), sent_at))
            delivery_id = last_id(cur)
            self._db.conn.executemany(
                "UPDATE alerts SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                f" last_error = NULL, held = NULL, delivery_id = ?, {_CLEAR_CLAIM} WHERE id = ?",
                [(sent_at, delivery_id, i) for i in alert_ids])
            self._db.execute(
                "INSERT INTO channel_state (channel, failures, last_sent_at) VALUES (?, 0, ?)"
                " ON CONFLICT(channel) DO UPDATE SET failures = 0, blocked_until = NULL,"
                " last_error = NULL, failing_since = NULL, failing_notified = 0,"
                " last_sent_at = excluded.last_sent_at", (channel, sent_at))
        return delivery_id

    def mark_attempt_failed(self, channel: str, alert_ids: Sequence[int], *, error: str,
                            retry_at: datetime, dead_ids: Sequence[int] = (),
                            now: datetime | None = None) -> None:
        """A message to ``channel`` failed: its alerts wait until ``retry_at`` (the
        channel is blocked until then too); ``dead_ids`` are dead-lettered. The
        cause (``error``) is kept on the rows and the channel; its claims end."""
        dead = set(dead_ids)
        moment = iso(now or utcnow())
        with errors(f"saving a failure on {channel}"), self._conn.write():
            self._db.conn.executemany(
                "UPDATE alerts SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
                f" status = ?, {_CLEAR_CLAIM} WHERE id = ?",
                [(error[:500], iso_up(retry_at), "dead" if i in dead else "pending", i)
                 for i in alert_ids])
            self._db.execute(
                "INSERT INTO channel_state (channel, failures, blocked_until, last_error,"
                " failing_since, last_failure_at) VALUES (?, 1, ?, ?, ?, ?)"
                " ON CONFLICT(channel) DO UPDATE SET"
                " failures = channel_state.failures + 1, blocked_until = excluded.blocked_until,"
                " last_error = excluded.last_error, last_failure_at = excluded.last_failure_at,"
                " failing_since = COALESCE(channel_state.failing_since, excluded.failing_since)",
                (channel, iso_up(retry_at), error[:500], moment, moment))

    def set_failing_notified(self, channel: str, notified: bool = True) -> None:
        """Remember that the channel's "failing" notice of this run of failures went out."""
        with errors(f"saving the state of {channel}"), self._conn.write():
            self._db.execute(
                "INSERT INTO channel_state (channel, failing_notified) VALUES (?, ?)"
                " ON CONFLICT(channel) DO UPDATE SET failing_notified = excluded.failing_notified",
                (channel, int(notified)))

    def channel_health(self) -> list[ChannelHealthRow]:
        """Every channel with a state or outbox rows: successes, failures, counts."""
        with errors("reading channel health"):
            counts = {r[0]: (r[1] or 0, r[2] or 0, r[3] or 0) for r in self._db.execute(
                "SELECT channel, SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN status = 'pending' AND claimed_by IS NOT NULL THEN 1 ELSE 0 END)"
                " FROM alerts"
                " GROUP BY channel")}
            states = {r[0]: r for r in self._db.execute(
                "SELECT channel, failures, last_sent_at, last_error, failing_since,"
                " last_failure_at FROM channel_state")}
        rows = []
        for channel in sorted(counts.keys() | states.keys()):
            pending, dead, claimed = counts.get(channel, (0, 0, 0))
            state = states.get(channel)
            rows.append(ChannelHealthRow(
                channel=channel,
                last_success_at=parse_iso(state[2]) if state else None,
                last_failure_at=parse_iso(state[5]) if state else None,
                last_error=state[3] if state else None,
                consecutive_failures=int(state[1] or 0) if state else 0,
                failing_since=parse_iso(state[4]) if state else None,
                pending=int(pending), dead=int(dead), claimed=int(claimed)))
        return rows

    def channel_state(self, channel: str) -> ChannelState:
        """The channel's failure count, backoff deadline, last message and last error."""
        with errors("reading channel state"):
            row = self._db.execute(
                "SELECT failures, blocked_until, last_sent_at, last_error, failing_since,"
                " last_failure_at, failing_notified FROM channel_state WHERE channel = ?",
                (channel,)).fetchone()
        if row is None:
            return ChannelState()
        return ChannelState(failures=row[0] or 0, blocked_until=parse_iso(row[1]),
                            last_sent_at=parse_iso(row[2]), last_error=row[3],
                            failing_since=parse_iso(row[4]), last_failure_at=parse_iso(row[5]),
                            failing_notified=bool(row[6]))

    def recent_messages(self, channel: str, since: datetime, *,
                        kinds: Sequence[str] = ("alert",)) -> list[datetime]:
        """When the messages of these kinds were sent to ``channel`` since ``since``."""
        with errors("reading deliveries"):
            rows = self._db.execute(
                f"SELECT sent_at FROM deliveries WHERE channel = ? AND sent_at > ? AND"
                f" kind IN ({','.join('?' * len(kinds))}) ORDER BY sent_at",
                (channel, iso(since), *kinds)).fetchall()
        return [d for d in (parse_iso(r[0]) for r in rows) if d is not None]

    def requeue(self, ref: str) -> int:
        """Put one alert (by id or alert key) back in the outbox, due now.

        Sent alerts are re-sent, dead ones revived; the attempt count restarts.
        """
        with errors("re-queueing an alert"), self._conn.write():
            cur = self._db.execute(
                "UPDATE alerts SET status = 'pending', attempts = 0, held = NULL,"
                f" next_attempt_at = ?, last_error = NULL, {_CLEAR_CLAIM} WHERE alert_key = ? OR"
                " (CAST(id AS TEXT) = ?)", (iso(utcnow()), ref, ref))
        return int(cur.rowcount)

    def retry_dead(self) -> int:
        """Put dead-lettered alerts back in the outbox, due now, attempts reset."""
        with errors("re-queueing dead alerts"), self._conn.write():
            cur = self._db.execute(
                "UPDATE alerts SET status = 'pending', attempts = 0, next_attempt_at = ?"
                " WHERE status = 'dead'", (iso(utcnow()),))
        return int(cur.rowcount)
