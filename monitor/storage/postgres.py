"""The PostgreSQL dialect of ``Connection`` (``database: postgresql://…``; psycopg 3).

``PgDatabase`` offers the part of the sqlite-utils ``Database`` the repositories use
(``execute``, ``query``, ``conn.executemany``, ``conn.in_transaction``, ``atomic``),
translating their SQL by rule (``storage/dialect.py``), so the repositories run
unchanged. ``PostgresConnection`` is the ``Connection`` over it:

- the connection is in autocommit, like SQLite's ``isolation_level=None``: a read
  outside ``write()`` is its own statement, ``write()`` is one READ COMMITTED
  transaction (a savepoint when nested);
- ``lock_key`` takes a transaction-scoped advisory lock (what ``BEGIN IMMEDIATE``'s
  file lock gave SQLite: one writer per article, per outbox channel), and
  ``skip_locked`` gives ``FOR UPDATE ... SKIP LOCKED`` for the outbox claim;
- ``lazy_commit`` is ``synchronous_commit = off`` for that transaction.

The password comes from the environment (``NEWSMON_DATABASE_PASSWORD``, else libpq's own
``PGPASSWORD`` or ``~/.pgpass``), never from the URL, and no message carries it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from sqlite_utils import Database

from monitor.config import DATABASE_PASSWORD_ENV as PASSWORD_ENV
from monitor.storage.db import (
    BUSY_TIMEOUT_S,
    POSTGRESQL,
    Connection,
    StoreError,
    errors,
    register_driver_errors,
)
from monitor.storage.dialect import to_postgres

__all__ = ["PASSWORD_ENV", "PgCursor", "PgDatabase", "PostgresConnection", "connect_postgres",
           "public_database_url"]


def public_database_url(url: str) -> str:
    """The URL as messages may show it: any password replaced by ``***``, no query."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _password() -> str | None:
    return os.environ.get(PASSWORD_ENV) or None


def _redact(text: str) -> str:
    """``text`` without the password (libpq does not echo it; this makes sure)."""
    for secret in (_password(), os.environ.get("PGPASSWORD")):
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)


def _store_error(action: str, exc: BaseException) -> StoreError:
    """A psycopg error as a StoreError with a message an operator can act on."""
    text = _redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if isinstance(exc, pg_errors.LockNotAvailable | pg_errors.DeadlockDetected):
        return StoreError(f"{action}: database is locked by another process ({text})")
    if isinstance(exc, pg_errors.DiskFull | pg_errors.OutOfMemory):
        return StoreError(f"{action}: database or disk is full ({text})")
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction | pg_errors.InsufficientPrivilege):
        return StoreError(f"{action}: the database is not writable ({text})")
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(f"{action}: cannot reach the PostgreSQL server ({text})")
    return StoreError(f"{action}: {text}")


register_driver_errors(psycopg.Error, _store_error)


class PgCursor:
    """A psycopg cursor as the repositories read a sqlite3 cursor: rows, rowcount, lastrowid."""

    def __init__(self, cursor: psycopg.Cursor[Any], *, returns_id: bool) -> None:
        self._cursor = cursor
        self.rowcount = cursor.rowcount
        self.lastrowid: int | None = None
        self._first: tuple[Any, ...] | None = None
        if returns_id:
            row = cursor.fetchone()
            self.lastrowid = int(row[0]) if row else None

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgDatabase:
    """One psycopg connection with the sqlite-utils calls the repositories make."""

    dialect = POSTGRESQL

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    @property
    def conn(self) -> PgDatabase:
        """``db.conn.executemany`` / ``db.conn.in_transaction``, as on sqlite-utils."""
        return self

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        text = to_postgres(sql)
        cursor = self.raw.execute(cast(Any, text), list(params) if not isinstance(params, dict)
                                  else params)
        return PgCursor(cursor, returns_id=text.returns_id)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [list(r) for r in rows]
        if rows:
            with self.raw.cursor() as cursor:
                cursor.executemany(cast(Any, to_postgres(sql, want_id=False)), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        with self.raw.cursor(row_factory=dict_row) as cursor:
            cursor.execute(cast(Any, to_postgres(sql, want_id=False)), list(params))
            rows = cursor.fetchall()
        yield from rows

    def run_script(self, sql: str) -> None:
        """DDL as written (no translation): several statements, no parameters."""
        self.raw.execute(cast(Any, sql))

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """A transaction, or a savepoint inside one."""
        with self.raw.transaction():
            yield

    def close(self) -> None:
        self.raw.close()


def connect_postgres(url: str, *, application: str = "newsmon",
                     settings: dict[str, str | int] | None = None) -> PgDatabase:
    """Connect to ``url`` (autocommit; the password from ``NEWSMON_DATABASE_PASSWORD``
    when set, else libpq's PGPASSWORD/~/.pgpass); raises StoreError naming the server
    without its password. ``application`` is the session's ``application_name`` (what
    ``pg_stat_activity`` shows); ``settings`` are more session settings (``-c name=value``)."""
    # a write waits for another's lock as long as SQLite's busy timeout
    options = {"lock_timeout": int(BUSY_TIMEOUT_S * 1000), **(settings or {})}
    extra: dict[str, Any] = {"application_name": application, "connect_timeout": 10,
                             "options": " ".join(f"-c {k}={v}" for k, v in options.items())}
    password = _password()
    if password:
        extra["password"] = password
    try:
        conn = psycopg.connect(url, autocommit=True, **extra)
    except psycopg.Error as exc:
        raise _store_error(f"connecting to {public_database_url(url)}", exc) from None
    except Exception as exc:  # a malformed URL (psycopg.ProgrammingError is an Error too)
        raise StoreError(f"connecting to {public_database_url(url)}: {_redact(str(exc))}") from None
    return PgDatabase(conn)


class PostgresConnection(Connection):
    """A PostgreSQL database, shared by the repositories of one ``Storage``."""

    dialect = POSTGRESQL

    def __init__(self, db: PgDatabase, url: str) -> None:
        # The repositories call the sqlite-utils subset PgDatabase implements.
        super().__init__(cast(Database, db), Path("."))
        self.pg = db
        self.url = url

    @property
    def path(self) -> Path:
        raise StoreError(f"the database is PostgreSQL ({self.label}): there is no database file;"
                         " this works on a SQLite database only")

    @property
    def label(self) -> str:
        return public_database_url(self.url)

    @contextmanager
    def write(self) -> Iterator[None]:
        """One transaction (READ COMMITTED); nested use becomes a savepoint."""
        with self.pg.raw.transaction():
            yield

    @contextmanager
    def lazy_commit(self) -> Iterator[None]:
        """Commit without waiting for the WAL flush, for writes cheap to lose (poll state):
        ``synchronous_commit = off`` for this session's next commits, then back."""
        if self.pg.in_transaction:
            yield
            return
        self.pg.raw.execute("SET synchronous_commit = off")
        try:
            yield
        finally:
            if not self.pg.raw.closed and not self.pg.in_transaction:
                self.pg.raw.execute("RESET synchronous_commit")

    def lock_key(self, namespace: str, key: str) -> None:
        """A transaction-scoped advisory lock on ``(namespace, key)``: other writers of the
        same key wait until this transaction ends (what SQLite's file lock gave)."""
        self.pg.raw.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))",
                            (namespace, key))

    def skip_locked(self, table: str) -> str:
        return f" FOR UPDATE OF {table} SKIP LOCKED"

    def has_table(self, name: str) -> bool:
        with errors("reading the schema"):
            return self.pg.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]

    def close(self) -> None:
        self.pg.close()
