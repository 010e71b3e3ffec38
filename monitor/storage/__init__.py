"""Everything that reads or writes the database; decides nothing.

One SQLite file (WAL), the embedded default, or a PostgreSQL database
(``database: postgresql://…``; ``storage/postgres.py``). ``open_storage(target)``
(a path, a ``postgresql://`` URL, or a ``Config``) creates or upgrades it and returns
a :class:`Storage`: one connection, with a repository per domain. The repositories
are the same on both backends (``storage/dialect.py`` says what is translated).

    storage.feeds   feeds and their poll state           (storage/feeds.py)
    storage.items   items, articles, matches, the item write (storage/items.py)
    storage.outbox  alerts, notices, deliveries, channel state (storage/outbox.py)
    storage.ops     cycles, meta, backup, retention, optimise (storage/operations.py)
    storage.views   read models for the CLI and status     (storage/read_models.py)

A ``Storage`` is used by one thread at a time; a second thread opens its own.
Stages and the runtime type against the Protocols of ``monitor.ports``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlite_utils import Database

from monitor.config import Config, is_postgres_url
from monitor.storage.db import Connection, StoreError, connect, errors
from monitor.storage.feeds import FeedRepository
from monitor.storage.items import ItemRepository
from monitor.storage.operations import OperationsRepository
from monitor.storage.outbox import OutboxRepository
from monitor.storage.read_models import ReadModels
from monitor.storage.schema import SCHEMA_VERSION, migrate

__all__ = ["SCHEMA_VERSION", "Storage", "StorageTarget", "StoreError", "is_postgres", "open_readonly",
           "open_storage"]

# Where a database is: a SQLite file, a ``postgresql://`` (``postgres://``) URL, or the
# config that names one (its ``database:`` field).
StorageTarget = Path | str | os.PathLike[str] | Config


class Storage:
    """One open database and its repositories (wiring only: no queries here)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.feeds = FeedRepository(connection)
        self.items = ItemRepository(connection)
        self.outbox = OutboxRepository(connection)
        self.ops = OperationsRepository(connection)
        self.views = ReadModels(connection)

    @property
    def path(self) -> Path:
        """The SQLite file (StoreError on PostgreSQL, which has none: see ``label``)."""
        return self.connection.path

    @property
    def label(self) -> str:
        """The database as messages name it: the file, or the URL without a password."""
        return self.connection.label

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.connection.dialect

    @property
    def db(self) -> Database:
        """The raw sqlite-utils handle (tests, benchmarks and migrations only)."""
        return self.connection.db

    def close(self) -> None:
        self.connection.close()


def _resolve(target: StorageTarget) -> Path | str:
    """A path, or a PostgreSQL URL (str), from any ``StorageTarget``."""
    if isinstance(target, Config):
        return target.database_target()
    text = os.fspath(target)
    return text if is_postgres_url(text) else Path(text)


def is_postgres(target: object) -> bool:
    """Whether ``target`` (a path, a URL, a Config) names a PostgreSQL database."""
    if isinstance(target, Config):
        return target.is_postgres
    return isinstance(target, str) and is_postgres_url(target)


def open_storage(target: StorageTarget) -> Storage:
    """Open (and create or upgrade) the database ``target`` names: a SQLite file, a
    ``postgresql://`` URL (``storage/postgres.py``; needs the ``postgresql`` extra), or a
    ``Config`` (its ``database:``)."""
    where = _resolve(target)
    if isinstance(where, str):
        return _open_postgres(where)
    path = where
    with errors(f"opening {path}"):
        db = connect(path)
        try:
            migrate(db)
        except BaseException:
            db.close()
            raise
    return Storage(Connection(db, path))


def open_readonly(target: StorageTarget) -> Storage:
    """Open an existing database read-only: no creation, no migration, no writes.

    On PostgreSQL: a connection whose transactions are read-only (the server refuses
    writes), to a database that must already hold the schema."""
    where = _resolve(target)
    if isinstance(where, str):
        return _open_postgres(where, readonly=True)
    path = where
    with errors(f"opening {path}"):
        db = connect(path, readonly=True)
    return Storage(Connection(db, path))


def _open_postgres(url: str, *, readonly: bool = False) -> Storage:
    try:
        from monitor.storage.postgres import PostgresConnection, connect_postgres, public_database_url
    except ImportError as exc:  # psycopg absent
        raise StoreError("database: a postgresql:// URL needs psycopg: pip install 'newsmon[postgresql]'"
                         f" ({exc.name or exc} is missing)") from None
    from monitor.storage.schema import pg_schema_version

    db = connect_postgres(url)
    label = public_database_url(url)
    try:
        with errors(f"opening {label}"):
            if readonly:
                if pg_schema_version(db) == 0:
                    raise StoreError(f"no newsmon database at {label} (has newsmon run yet?)")
                db.raw.execute("SET default_transaction_read_only = on")
            else:
                migrate(db)  # type: ignore[arg-type]  # PgDatabase: the sqlite-utils subset
    except BaseException:
        db.close()
        raise
    return Storage(PostgresConnection(db, url))
