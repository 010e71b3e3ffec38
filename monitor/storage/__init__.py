"""Everything that reads or writes the database; decides nothing.

One SQLite file (WAL). ``open_storage(path)`` creates or upgrades it and
returns a :class:`Storage`: one connection, with a repository per domain.

    storage.feeds   feeds and their poll state           (storage/feeds.py)
    storage.items   items, articles, matches, the item write (storage/items.py)
    storage.outbox  alerts, notices, deliveries, channel state (storage/outbox.py)
    storage.ops     cycles, meta, backup, retention, optimise (storage/operations.py)
    storage.views   read models for the CLI and status     (storage/read_models.py)

A ``Storage`` is used by one thread at a time; a second thread opens its own.
Stages and the runtime type against the Protocols of ``monitor.ports``.
"""

from __future__ import annotations

from pathlib import Path

from sqlite_utils import Database

from monitor.storage.db import Connection, StoreError, connect, errors
from monitor.storage.feeds import FeedRepository
from monitor.storage.items import ItemRepository
from monitor.storage.operations import OperationsRepository
from monitor.storage.outbox import OutboxRepository
from monitor.storage.read_models import ReadModels
from monitor.storage.schema import SCHEMA_VERSION, migrate

__all__ = ["SCHEMA_VERSION", "Storage", "StoreError", "open_readonly", "open_storage"]


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
        return self.connection.path

    @property
    def db(self) -> Database:
        """The raw sqlite-utils handle (tests, benchmarks and migrations only)."""
        return self.connection.db

    def close(self) -> None:
        self.connection.close()


def open_storage(path: Path) -> Storage:
    """Open (and create or upgrade) the database at ``path``."""
    path = Path(path)
    with errors(f"opening {path}"):
        db = connect(path)
        try:
            migrate(db)
        except BaseException:
            db.close()
            raise
    return Storage(Connection(db, path))


def open_readonly(path: Path) -> Storage:
    """Open an existing database read-only: no creation, no migration, no writes."""
    path = Path(path)
    with errors(f"opening {path}"):
        db = connect(path, readonly=True)
    return Storage(Connection(db, path))
