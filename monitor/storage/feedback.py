"""Analyst feedback: "relevant" / "not relevant" on an article, one of its topics, or an alert.

Written by the web workspace (its only write) and read by whoever learns from
it (a future feedback command, the learned stage's training data). Rows are appended,
never updated: the newest verdict on a (article, topic) is the one that counts,
and the history shows when an analyst changed their mind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitor.storage.db import Connection, errors, iso, last_id, parse_iso, utcnow

__all__ = ["VERDICTS", "FeedbackRepository", "FeedbackRow", "Verdict"]

Verdict = Literal["relevant", "not_relevant"]
VERDICTS: tuple[Verdict, ...] = ("relevant", "not_relevant")


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    id: int
    article_id: int
    topic: str | None
    alert_id: int | None
    verdict: str
    note: str | None
    source: str | None
    created_at: datetime | None


class FeedbackRepository:
    """Appends and reads ``feedback`` rows."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._db = connection.db

    def add(self, article_id: int, verdict: Verdict, *, topic: str | None = None,
            alert_id: int | None = None, note: str | None = None, source: str = "web",
            now: datetime | None = None) -> int:
        """Record one verdict; returns its id. Unknown articles raise ``StoreError``."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        with errors("storing feedback"), self._conn.write():
            cur = self._db.execute(
                "INSERT INTO feedback (article_id, topic, alert_id, verdict, note, source,"
                " created_at) VALUES (?,?,?,?,?,?,?)",
                (article_id, topic, alert_id, verdict, note, source, iso(now or utcnow())))
        return last_id(cur)

    def for_article(self, article_id: int) -> list[FeedbackRow]:
        """Every verdict on one article, oldest first."""
        return self._rows("WHERE article_id = ? ORDER BY id", (article_id,))

    def latest(self, *, limit: int = 1000) -> list[FeedbackRow]:
        """The newest verdicts, newest first."""
        return self._rows("ORDER BY id DESC LIMIT ?", (limit,))

    def _rows(self, tail: str, params: tuple[object, ...]) -> list[FeedbackRow]:
        with errors("reading feedback"):
            rows = self._db.execute(
                "SELECT id, article_id, topic, alert_id, verdict, note, source, created_at"
                f" FROM feedback {tail}", params).fetchall()
        return [FeedbackRow(id=r[0], article_id=r[1], topic=r[2], alert_id=r[3], verdict=r[4],
                            note=r[5], source=r[6], created_at=parse_iso(r[7])) for r in rows]
