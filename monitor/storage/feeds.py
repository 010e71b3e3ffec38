"""The feeds table: which feeds are configured, and each one's poll state and health."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from monitor.records import FeedRecord
from monitor.storage.db import Connection, errors, iso, parse_iso, utcnow


def feed_record(row: dict[str, Any]) -> FeedRecord:
    """A ``feeds`` row (as sqlite-utils reads it) as a typed record."""
    return FeedRecord(
        id=int(row["id"]), url=row["url"], name=row.get("name"),
        tags=tuple(json.loads(row.get("tags") or "[]")), enabled=bool(row.get("enabled", 1)),
        etag=row.get("etag"), last_modified=row.get("last_modified"),
        body_hash=row.get("body_hash"), last_poll_at=parse_iso(row.get("last_poll_at")),
        last_success_at=parse_iso(row.get("last_success_at")), last_error=row.get("last_error"),
        last_error_kind=row.get("last_error_kind"),
        last_error_at=parse_iso(row.get("last_error_at")),
        consecutive_failures=int(row.get("consecutive_failures") or 0),
        failing_since=parse_iso(row.get("failing_since")),
        next_poll_at=parse_iso(row.get("next_poll_at")),
        items_total=int(row.get("items_total") or 0), items_per_day=row.get("items_per_day"),
        health_state=row.get("health_state") or "ok",
        health_since=parse_iso(row.get("health_since")),
        poll_interval=row.get("poll_interval"), poll_reason=row.get("poll_reason"),
        last_new_at=parse_iso(row.get("last_new_at")),
        churn_streak=int(row.get("churn_streak") or 0),
        alerts_held_since=parse_iso(row.get("alerts_held_since")),
        ttl_minutes=row.get("ttl_minutes"), created_at=parse_iso(row.get("created_at")),
    )


class FeedRepository:
    """Reads and writes of ``feeds``."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._db = connection.db

    def sync(self, feeds: Iterable[tuple[str, str | None, Sequence[str]]]) -> None:
        """Make sure every configured feed has a row; mark the others disabled."""
        now = iso(utcnow())
        with errors("saving feeds"), self._conn.write():
            urls = []
            for url, name, tags in feeds:
                urls.append(url)
                self._db.execute(
                    "INSERT INTO feeds (url, name, tags, enabled, created_at) VALUES (?, ?, ?, 1, ?)"
                    " ON CONFLICT(url) DO UPDATE SET name = excluded.name, tags = excluded.tags,"
                    " enabled = 1",
                    (url, name, json.dumps(list(tags)), now),
                )
            marks = ",".join("?" * len(urls))
            self._db.execute(
                f"UPDATE feeds SET enabled = 0 WHERE url NOT IN ({marks})" if urls
                else "UPDATE feeds SET enabled = 0",
                urls,
            )

    def get(self, url: str) -> FeedRecord:
        """The feed's stored state; an unknown feed is added (enabled), others untouched."""
        with errors(f"reading feed {url}"):
            rows = list(self._db.query("SELECT * FROM feeds WHERE url = ?", (url,)))
        if rows:
            return feed_record(rows[0])
        with errors(f"adding feed {url}"), self._conn.write():
            self._db.execute(
                "INSERT INTO feeds (url, tags, enabled, created_at) VALUES (?, '[]', 1, ?)"
                " ON CONFLICT(url) DO NOTHING", (url, iso(utcnow())))
            rows = list(self._db.query("SELECT * FROM feeds WHERE url = ?", (url,)))
        return feed_record(rows[0])

    def record_poll_success(
        self, feed_id: int, *, etag: str | None, last_modified: str | None,
        body_hash: str | None, new_items: int, next_poll_at: datetime | None = None,
        interval: float | None = None, reason: str | None = None,
        items_per_day: float | None = None, last_new_at: datetime | None = None,
        churn_streak: int | None = None, ttl_minutes: int | None = None,
    ) -> None:
        """A successful poll: validators, schedule, and the counters that changed.

        ``items_per_day``/``last_new_at``/``churn_streak`` are written only when
        given (None keeps the stored value), so a 304 costs one small UPDATE.
        """
        now = iso(utcnow())
        sets = ["etag = ?", "last_modified = ?", "body_hash = ?", "last_poll_at = ?",
                "last_success_at = ?", "consecutive_failures = 0", "failing_since = NULL",
                "next_poll_at = ?", "items_total = items_total + ?", "poll_interval = ?",
                "poll_reason = ?"]
        params: list[Any] = [etag, last_modified, body_hash, now, now, iso(next_poll_at),
                             new_items, interval, reason]
        optional = {"items_per_day": items_per_day, "last_new_at": iso(last_new_at),
                    "churn_streak": churn_streak, "ttl_minutes": ttl_minutes}
        for column, value in optional.items():
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        with errors("saving poll state"), self._conn.lazy_commit(), self._conn.write():
            self._db.execute(f"UPDATE feeds SET {', '.join(sets)} WHERE id = ?", [*params, feed_id])

    def record_poll_failure(
        self, feed_id: int, *, kind: str, message: str, next_poll_at: datetime | None = None,
        counted: bool = True, interval: float | None = None, reason: str | None = None,
    ) -> None:
        """A failed poll. ``counted=False`` (the whole network was down) records the
        error and the retry time but neither adds to ``consecutive_failures`` nor
        starts ``failing_since``: the feed itself is not to blame."""
        now = iso(utcnow())
        count = 1 if counted else 0
        with errors("saving poll error"), self._conn.lazy_commit(), self._conn.write():
            self._db.execute(
                "UPDATE feeds SET last_poll_at = ?, last_error = ?, last_error_kind = ?,"
                " last_error_at = ?, consecutive_failures = consecutive_failures + ?,"
                " failing_since = CASE WHEN ? <> 0 THEN COALESCE(failing_since, ?)"
                " ELSE failing_since END, next_poll_at = ?, poll_interval = ?, poll_reason = ?"
                " WHERE id = ?",
                (now, message[:1000], kind, now, count, count, now, iso(next_poll_at),
                 interval, reason, feed_id),
            )

    def set_next_poll(self, feed_id: int, next_poll_at: datetime) -> None:
        """Bring a feed's next poll forward (a changed ``interval:`` applies at once)."""
        with errors("saving the next poll"), self._conn.write():
            self._db.execute("UPDATE feeds SET next_poll_at = ? WHERE id = ?",
                             (iso(next_poll_at), feed_id))

    def set_health(self, feed_id: int, state: str, since: datetime) -> None:
        """Record a change of the feed's health state ("ok", "failing", "quiet")."""
        with errors("saving feed health"), self._conn.write():
            self._db.execute("UPDATE feeds SET health_state = ?, health_since = ? WHERE id = ?",
                             (state, iso(since), feed_id))

    def set_alerts_held(self, feed_id: int, since: datetime | None) -> None:
        """Open (a time) or close (None) the feed's GUID-churn circuit breaker."""
        with errors("saving feed breaker"), self._conn.write():
            self._db.execute("UPDATE feeds SET alerts_held_since = ? WHERE id = ?",
                             (iso(since), feed_id))
