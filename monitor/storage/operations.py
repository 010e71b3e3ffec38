"""Operations: cycles, daemon meta, backup, integrity, retention, optimisation,
and moving stored deadlines after a wall-clock step."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.records import CycleRecord
from monitor.storage.db import POSTGRESQL, Connection, StoreError, errors, iso, last_id, parse_iso, utcnow


def cycle_record(row: dict[str, Any]) -> CycleRecord:
    return CycleRecord(
        id=int(row["id"]), started_at=parse_iso(row.get("started_at")),
        finished_at=parse_iso(row.get("finished_at")), feeds_ok=int(row.get("feeds_ok") or 0),
        feeds_failed=int(row.get("feeds_failed") or 0), items_new=int(row.get("items_new") or 0),
        matches=int(row.get("matches") or 0), alerts=int(row.get("alerts") or 0),
        error=row.get("error"))


class OperationsRepository:
    """Reads and writes of ``cycles`` and ``meta``, and the whole-file operations."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._db = connection.db

    # cycles -----------------------------------------------------------------------------
    def start_cycle(self) -> int:
        with errors("starting a cycle"), self._conn.write():
            cur = self._db.execute("INSERT INTO cycles (started_at) VALUES (?)", (iso(utcnow()),))
        return last_id(cur)

    def finish_cycle(self, cycle_id: int, *, feeds_ok: int, feeds_failed: int, items_new: int,
                     matches: int, alerts: int, error: str | None = None) -> None:
        with errors("finishing a cycle"), self._conn.write():
            self._db.execute(
                "UPDATE cycles SET finished_at = ?, feeds_ok = ?, feeds_failed = ?, items_new = ?,"
                " matches = ?, alerts = ?, error = ? WHERE id = ?",
                (iso(utcnow()), feeds_ok, feeds_failed, items_new, matches, alerts, error,
                 cycle_id),
            )

    def record_cycle(self, started: datetime, *, feeds_ok: int, feeds_failed: int,
                     items_new: int, matches: int, alerts: int, error: str | None = None) -> int:
        """Write a whole finished cycle in one statement (the daemon's tally of polls)."""
        with errors("recording a cycle"), self._conn.write():
            cur = self._db.execute(
                "INSERT INTO cycles (started_at, finished_at, feeds_ok, feeds_failed, items_new,"
                " matches, alerts, error) VALUES (?,?,?,?,?,?,?,?)",
                (iso(started), iso(utcnow()), feeds_ok, feeds_failed, items_new, matches, alerts,
                 error))
        return last_id(cur)

    def last_cycle(self) -> CycleRecord | None:
        """The most recently finished cycle, or None."""
        with errors("reading cycles"):
            rows = list(self._db.query(
                "SELECT * FROM cycles WHERE finished_at IS NOT NULL ORDER BY finished_at DESC,"
                " id DESC LIMIT 1"))
        return cycle_record(rows[0]) if rows else None

    # meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with errors("reading meta"):
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with errors("saving meta"), self._conn.write():
            self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key)"
                             " DO UPDATE SET value = excluded.value", (key, value))

    # the file ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        with errors("reading the schema version"):
            if self._conn.dialect == POSTGRESQL:
                from monitor.storage.schema import pg_schema_version

                return pg_schema_version(self._db)
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def database_bytes(self) -> int:
        """The database's size on disk: the file plus its WAL (PostgreSQL: its size)."""
        if self._conn.dialect == POSTGRESQL:
            with errors("reading the database size"):
                return int(self._db.execute("SELECT pg_database_size(current_database())")
                           .fetchone()[0])
        total = 0
        for suffix in ("", "-wal"):
            part = Path(f"{self._conn.path}{suffix}")
            total += part.stat().st_size if part.is_file() else 0
        return total

    def integrity_check(self) -> str:
        """SQLite's ``integrity_check``; "ok" on PostgreSQL when the schema is in place
        (the server checks its own pages: ``data_checksums``, ``amcheck``)."""
        with errors("checking integrity"):
            if self._conn.dialect == POSTGRESQL:
                return "ok" if self.schema_version() > 0 else "no newsmon schema"
            return "; ".join(r[0] for r in self._db.execute("PRAGMA integrity_check"))

    def backup(self, dest: Path) -> None:
        """Copy the live database to ``dest`` with SQLite's online backup API.

        Consistent while the daemon writes (the copy restarts on a concurrent
        write, page batches keep the lock short).
        """
        dest = Path(dest)
        if self._conn.dialect == POSTGRESQL:
            raise StoreError(f"newsmon backs up SQLite files only: back up {self._conn.label}"
                             " with PostgreSQL's own tools (pg_dump, or base backups and WAL"
                             " archiving; see docs/postgresql.md)")
        with errors(f"backing up to {dest}"):
            target = sqlite3.connect(str(dest))
            try:
                self._db.conn.backup(target, pages=256)
            finally:
                target.close()

    # retention --------------------------------------------------------------------------
    def prune_bodies(self, before: datetime) -> int:
        """Drop the body text of articles first seen before ``before``.

        Titles, summaries, matches (with their evidence) and alerts stay, so
        past alerts can still be explained; ``body_pruned`` records the loss.
        """
        with errors("pruning article bodies"), self._conn.write():
            cur = self._db.execute(
                "UPDATE articles SET body = NULL, body_pruned = 1"
                " WHERE body_pruned = 0 AND first_seen < ?", (iso(before),))
        return int(cur.rowcount)

    def prune_cycles(self, before: datetime) -> int:
        with errors("pruning cycles"), self._conn.write():
            cur = self._db.execute("DELETE FROM cycles WHERE finished_at < ?", (iso(before),))
        return int(cur.rowcount)

    def free_fraction(self) -> float:
        """The share of the file that is free pages (what VACUUM would give back).

        0.0 on PostgreSQL: autovacuum reuses dead space; ``VACUUM FULL`` is an operator's call."""
        if self._conn.dialect == POSTGRESQL:
            return 0.0
        with errors("reading page counts"):
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return float(free / pages) if pages else 0.0

    def optimize(self, *, vacuum: bool = False) -> None:
        """``PRAGMA optimize`` and a WAL checkpoint; ``VACUUM`` too when asked.

        VACUUM rewrites the whole file and holds the write lock meanwhile, so
        the daemon asks for it only when idle and when enough pages are free.
        """
        if self._conn.dialect == POSTGRESQL:
            # Autocommit: VACUUM cannot run inside a transaction; ANALYZE is the planner's
            # statistics, as PRAGMA optimize. No checkpoint: the server runs its own.
            with errors("optimising the database"):
                self._db.execute("VACUUM (ANALYZE)" if vacuum else "ANALYZE")
            return
        with errors("optimising the database"):
            self._db.execute("PRAGMA optimize")
            if vacuum:
                self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # clock ------------------------------------------------------------------------------
    def shift_deadlines(self, seconds: float) -> int:
        """Move every stored future deadline earlier by ``seconds``.

        After the wall clock steps back, the next polls and alert retries written
        before the step lie ``seconds`` too far ahead; this puts them back where
        they were meant to be. Returns the number of rows moved.
        """
        moved = 0
        delta = timedelta(seconds=seconds)
        with errors("moving deadlines after a clock step"), self._conn.write():
            for table, column in (("feeds", "next_poll_at"), ("alerts", "next_attempt_at")):
                rows = self._db.execute(
                    f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()
                for row_id, value in rows:
                    when = parse_iso(value)
                    if when is not None:
                        self._db.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?",
                                         (iso(when - delta), row_id))
                        moved += 1
        return moved
