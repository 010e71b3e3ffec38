"""The connection every repository shares: opening, the write transaction, and
driver errors turned into ``StoreError`` with a message an operator can act on.

This module is the SQLite dialect (the embedded default). ``storage/postgres.py``
gives the same ``Connection`` interface over PostgreSQL, so the repositories run
unchanged on both; the few places where the dialects truly differ ask the
connection (``dialect``, ``lock_key``, ``skip_locked``)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlite_utils import Database

from monitor.errors import StorageError
from monitor.records import iso, parse_iso, utcnow

__all__ = ["BUSY_TIMEOUT_S", "POSTGRESQL", "SQLITE", "Connection", "StoreError", "check_database",
           "connect", "errors", "iso", "iso_up", "last_id", "parse_iso", "register_driver_errors",
           "utcnow"]

BUSY_TIMEOUT_S = 10.0
SQLITE, POSTGRESQL = "sqlite", "postgresql"  # ``Connection.dialect``


class StoreError(StorageError):
    """A database failure (locked, disk full, corrupt), with a clear message."""


def last_id(cursor: sqlite3.Cursor) -> int:
    """The rowid an INSERT just made."""
    rowid = cursor.lastrowid
    assert rowid is not None, "no row inserted"
    return rowid


def iso_up(moment: datetime) -> str:
    """``iso()`` rounded up to the second: a wait (Retry-After) is never cut short."""
    if moment.microsecond:
        moment = moment + timedelta(microseconds=1_000_000 - moment.microsecond)
    return iso(moment) or ""


def connect(path: Path, *, readonly: bool = False) -> Database:
    """Open the SQLite file at ``path`` (created if missing, unless ``readonly``).

    Migrations are not run here (``schema.migrate``). ``readonly`` opens an
    existing file without creating or writing it (``newsmon status`` beside
    a running daemon, or an older daemon).
    """
    path = Path(path)
    if readonly:
        if not path.exists():
            raise sqlite3.OperationalError(f"no database at {path}")
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        return Database(conn)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    if created:
        # Owner only: the file holds feed URLs, which may carry tokens (docs/feeds.md);
        # SQLite gives the -wal and -shm files the same mode.
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
    # FULL: an acknowledged commit (the outbox row) survives power loss; the
    # daemon's write rate makes the cost (~0.3 ms a commit) irrelevant.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return Database(conn)


def check_database(path: Path, *, init: bool = False) -> None:
    """The daemon's start-up check of its file, before anything writes to it.

    A missing file is a new database (created by ``open_storage``). A file that
    exists but is empty (zero bytes, or SQLite with no table) is refused unless
    ``init``: a database that was truncated or replaced would otherwise be taken
    for a new one, and every item still in the feeds would alert again. A file
    that is not SQLite, holds another program's tables, or fails
    ``PRAGMA quick_check`` is refused too. Raises StoreError saying what to do.
    """
    path = Path(path)
    wal = path.with_name(path.name + "-wal")
    if not path.exists():
        if wal.exists() and wal.stat().st_size > 0 and not init:
            raise StoreError(f"{path} is missing but its write-ahead log {wal.name} is not: the"
                             " database was moved or deleted while in use. Restore it, or remove"
                             " the -wal/-shm files, or start with `newsmon run --init`")
        return
    refuse_empty = (f"{path} is empty, where a database was expected: it may have been"
                    " truncated or replaced. Restore a backup, or start afresh with"
                    " `newsmon run --init` (every item in the feeds will count as new)")
    if path.stat().st_size == 0:
        if not init:
            raise StoreError(refuse_empty)
        return
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    try:
        with errors(f"checking {path}"):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
                                  ).fetchone()[0]
            if version == 0 and tables == 0:
                if not init:
                    raise StoreError(refuse_empty)
                return
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if version == 0 or not {"meta", "feeds", "items"} <= names:
                raise StoreError(f"{path} is not a newsmon database (schema v{version}, tables:"
                                 f" {', '.join(sorted(names)[:8]) or 'none'}): refusing to use it")
            verdict = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
            if verdict != ["ok"]:
                raise StoreError(f"{path} is damaged (quick_check: {'; '.join(verdict)[:300]}):"
                                 " restore a backup (`newsmon db backup` makes one) or move it away")
    except StoreError as exc:
        if isinstance(exc.__cause__, sqlite3.DatabaseError) and "malformed" in str(exc.__cause__):
            raise StoreError(f"{path} is damaged ({exc.__cause__}): restore a backup (`newsmon"
                             " backup` makes one) or move it away") from exc
        raise
    finally:
        conn.close()


# Other drivers' error types and how each becomes a StoreError (``register_driver_errors``):
# db.py must not import an optional driver, so the PostgreSQL module registers its own.
_DRIVER_ERRORS: list[tuple[type[BaseException], Callable[[str, BaseException], StoreError]]] = []


def register_driver_errors(kind: type[BaseException],
                           translate: Callable[[str, BaseException], StoreError]) -> None:
    """Have ``errors()`` turn ``kind`` (a driver's base error) into ``translate(action, exc)``."""
    if all(known is not kind for known, _ in _DRIVER_ERRORS):
        _DRIVER_ERRORS.append((kind, translate))


@contextmanager
def errors(action: str) -> Iterator[None]:
    """Turn database errors (sqlite, or a registered driver's) into StoreError with a
    message an operator can act on."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise StoreError(f"{action}: database is locked by another process ({text})") from exc
        if "full" in text:
            raise StoreError(f"{action}: database or disk is full ({text})") from exc
        if "readonly" in text or "read-only" in text:
            raise StoreError(f"{action}: the database file is not writable ({text})") from exc
        raise StoreError(f"{action}: {text}") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{action}: {exc}") from exc
    except Exception as exc:
        for kind, translate in _DRIVER_ERRORS:
            if isinstance(exc, kind):
                raise translate(action, exc) from exc
        raise


class Connection:
    """One open database file, shared by the repositories of one ``Storage``.

    The SQLite dialect; ``storage.postgres.PostgresConnection`` is the other one.
    """

    dialect = SQLITE

    def __init__(self, db: Database, path: Path) -> None:
        self.db = db
        self._path = Path(path)

    @property
    def path(self) -> Path:
        """The database file (SQLite only: a PostgreSQL connection has none)."""
        return self._path

    @property
    def label(self) -> str:
        """What messages and ``newsmon status`` call this database (never a password)."""
        return str(self._path)

    def lock_key(self, namespace: str, key: str) -> None:
        """Serialise writers on ``(namespace, key)`` until the transaction ends.

        Nothing to do here: ``BEGIN IMMEDIATE`` already holds the whole file's
        write lock. PostgreSQL takes a transaction-scoped advisory lock."""

    def skip_locked(self, table: str) -> str:
        """The clause that locks a SELECT's rows of ``table`` for this transaction and
        passes over rows another transaction holds ("" here: the file lock does it)."""
        return ""

    def has_table(self, name: str) -> bool:
        """Whether the database holds table ``name`` (an older schema may not)."""
        with errors("reading the schema"):
            return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                   (name,)).fetchone() is not None

    @contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction that takes SQLite's write lock up front.

        A deferred ``BEGIN`` that reads before it writes fails at once with
        "database is locked" when another connection (the delivery thread, a
        ``newsmon`` command) commits in between: the busy timeout does not cover
        a lock upgrade. ``BEGIN IMMEDIATE`` waits for the lock instead. Nested
        use becomes a savepoint.
        """
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def lazy_commit(self) -> Iterator[None]:
        """Commit without waiting for the disk (``synchronous=NORMAL``) for writes
        that are cheap to lose: a feed's poll state. In WAL mode the commit stays
        atomic and ordered; a power cut may only forget it (the feed is polled
        again). Alerts and items keep ``FULL``. Saves an fsync (~2 ms) per poll:
        most of an all-304 cycle."""
        if self.db.conn.in_transaction:
            yield  # inside someone's transaction: their commit decides
            return
        previous = self.db.execute("PRAGMA synchronous").fetchone()[0]
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self.db.execute(f"PRAGMA synchronous={int(previous)}")

    def close(self) -> None:
        self.db.close()
