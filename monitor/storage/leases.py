"""The scale-out tables in PostgreSQL: process heartbeats, feed leases, host politeness,
and the items queued for processing. Stores what it is told; decides nothing.

    cluster_processes     one row per poller/worker/deliver process: kind, host, pid,
                          started, last beat, work done (``newsmon status``)
    cluster_feed_leases   which poller polls a feed, until when (claimed FOR UPDATE SKIP LOCKED)
    cluster_host_slots    per host, ``per_host`` request slots, each leased while a request is
                          in flight (so 4 in flight per host holds across every process)
    cluster_host_pauses   per host, "no request before" after a 429/503 (shared by all)
    cluster_queued_items  an item handed to the queue and not recorded yet: written in the
                          same transaction as its task, so the next poll does not queue it again

Every moment is the database's clock (``now()``): processes on machines whose
clocks differ still agree on who holds what. Which leases to claim, release or
renew is decided in ``monitor/cluster/leases.py`` and passed in as a callable
(as ``items.record_item`` takes its planner).

Speaks psycopg 3 directly, on a connection in autocommit mode with explicit
transactions; a lock makes one :class:`ClusterStore` safe to share between threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from monitor.errors import StorageError

__all__ = ["SCHEMA_LOCK", "ClusterStore", "LeaseDecision", "LeaseRow", "ProcessRow",
           "QueuedItem", "connect_cluster", "install_cluster_schema"]

PASSWORD_ENV = "NEWSMON_DATABASE_PASSWORD"
# pg_advisory_xact_lock key that serialises schema installs (ours and the queue's).
SCHEMA_LOCK = 0x6E65_7773  # "news"

CLUSTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_processes (
    id          text PRIMARY KEY,
    kind        text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_beat   timestamptz NOT NULL DEFAULT now(),
    work_done   bigint NOT NULL DEFAULT 0,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    stopped_at  timestamptz
);
CREATE INDEX IF NOT EXISTS cluster_processes_beat ON cluster_processes (kind, last_beat);
CREATE TABLE IF NOT EXISTS cluster_feed_leases (
    feed_url     text PRIMARY KEY,
    holder       text,
    lease_until  timestamptz,
    claimed_at   timestamptz,
    takeovers    bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cluster_host_slots (
    host    text NOT NULL,
    slot    integer NOT NULL,
    holder  text,
    until   timestamptz,
    PRIMARY KEY (host, slot)
);
CREATE TABLE IF NOT EXISTS cluster_host_pauses (
    host    text PRIMARY KEY,
    until   timestamptz NOT NULL,
    status  integer
);
CREATE TABLE IF NOT EXISTS cluster_queued_items (
    feed_url      text NOT NULL,
    guid          text NOT NULL,
    content_hash  text NOT NULL DEFAULT '',
    job_id        bigint,
    queued_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed_url, guid)
);
CREATE INDEX IF NOT EXISTS cluster_queued_items_hash ON cluster_queued_items (feed_url, content_hash);
"""


class _Psycopg(Protocol):  # the little of psycopg.Connection used here (typing only)
    def execute(self, query: Any, params: Any = ...) -> Any: ...
    def transaction(self) -> Any: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One process of the cluster, as its heartbeat row says."""

    id: str
    kind: str  # poller, worker, deliver
    host: str
    pid: int
    started_at: datetime
    last_beat: datetime
    work_done: int
    detail: dict[str, Any]
    stopped_at: datetime | None
    beat_age: float  # seconds since its last beat, by the database's clock


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A feed's lease as stored (``cluster.leases.Lease``: who holds it, until when, by the
    database's clock)."""

    feed: str
    holder: str | None
    until: datetime | None


@dataclass(frozen=True, slots=True)
class LeaseDecision:
    """What a poller does with leases in one round (``cluster.leases.LeasePlan``, decided by
    ``cluster.leases.plan_leases``): free feeds to claim, surplus to release, leases to renew."""

    claim: Sequence[str]
    release: Sequence[str]
    renew: Sequence[str]


@dataclass(frozen=True, slots=True)
class QueuedItem:
    """An item to hand to the queue: its identity and the task's arguments."""

    guid: str
    content_hash: str
    task_args: dict[str, Any]


def connect_cluster(url: str, *, application: str = "newsmon") -> Any:
    """A psycopg connection (autocommit; transactions are explicit) to ``url``."""
    import psycopg

    # The password comes from the environment, never the URL (as storage/postgres.py).
    password = os.environ.get(PASSWORD_ENV) or None
    extra: dict[str, Any] = {"password": password} if password else {}
    try:
        return psycopg.connect(url, autocommit=True, application_name=application,
                               connect_timeout=10, **extra)
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to the cluster database: {_masked(str(exc))}") from exc


def install_cluster_schema(conn: _Psycopg, extra: Callable[[Any], None] | None = None) -> None:
    """Create the cluster tables (idempotent), then run ``extra`` (the queue's schema) in
    the same transaction, under an advisory lock so that processes starting together
    do not race."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(CLUSTER_SCHEMA)
        if extra is not None:
            extra(conn)


def _masked(text: str) -> str:
    """A libpq error can quote the connection string: never show a password."""
    import re

    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1****@", text)


class ClusterStore:
    """The cluster tables over one psycopg connection (thread-safe by a lock)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._lock = threading.RLock()

    @contextmanager
    def _tx(self, action: str) -> Iterator[Any]:
        import psycopg

        with self._lock:
            try:
                with self.conn.transaction():
                    yield self.conn
            except psycopg.Error as exc:
                raise StorageError(f"{action}: {_masked(str(exc)).strip()}") from exc

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def now(self) -> datetime:
        with self._tx("reading the database clock") as conn:
            return conn.execute("SELECT now()").fetchone()[0]

    # -- processes -------------------------------------------------------------------------

    def register_process(self, process_id: str, kind: str, host: str, pid: int,
                         detail: dict[str, Any] | None = None) -> None:
        from psycopg.types.json import Jsonb

        with self._tx("registering a process") as conn:
            conn.execute(
                "INSERT INTO cluster_processes (id, kind, host, pid, detail) VALUES (%s,%s,%s,%s,%s)"
                " ON CONFLICT (id) DO UPDATE SET last_beat = now(), stopped_at = NULL",
                (process_id, kind, host, pid, Jsonb(detail or {})))

    def beat(self, process_id: str, work_done: int, detail: dict[str, Any] | None = None) -> None:
        """The process is alive and has done ``work_done`` units of work since it started."""
        from psycopg.types.json import Jsonb

        with self._tx("writing a heartbeat") as conn:
            conn.execute(
                "UPDATE cluster_processes SET last_beat = now(), work_done = %s,"
                " detail = COALESCE(%s, detail) WHERE id = %s",
                (work_done, Jsonb(detail) if detail is not None else None, process_id))

    def stop_process(self, process_id: str) -> None:
        with self._tx("marking a process stopped") as conn:
            conn.execute("UPDATE cluster_processes SET stopped_at = now(), last_beat = now()"
                         " WHERE id = %s", (process_id,))

    def processes(self, *, within: float) -> list[ProcessRow]:
        """Processes that beat within ``within`` seconds and did not stop, by kind and host."""
        with self._tx("reading processes") as conn:
            rows = conn.execute(
                "SELECT id, kind, host, pid, started_at, last_beat, work_done, detail, stopped_at,"
                " EXTRACT(EPOCH FROM now() - last_beat) FROM cluster_processes"
                " WHERE stopped_at IS NULL AND last_beat > now() - make_interval(secs => %s)"
                " ORDER BY kind, host, pid", (within,)).fetchall()
        return [ProcessRow(r[0], r[1], r[2], int(r[3]), r[4], r[5], int(r[6]), dict(r[7] or {}),
                           r[8], float(r[9])) for r in rows]

    def live_count(self, kind: str, *, within: float) -> int:
        with self._tx("counting processes") as conn:
            return int(conn.execute(
                "SELECT COUNT(*) FROM cluster_processes WHERE kind = %s AND stopped_at IS NULL"
                " AND last_beat > now() - make_interval(secs => %s)", (kind, within)).fetchone()[0])

    def forget_processes(self, *, older_than: float) -> int:
        """Drop rows of processes gone for longer than ``older_than`` seconds."""
        with self._tx("pruning processes") as conn:
            return int(conn.execute(
                "DELETE FROM cluster_processes WHERE last_beat < now() - make_interval(secs => %s)",
                (older_than,)).rowcount)

    # -- feed leases -----------------------------------------------------------------------

    def sync_feeds(self, feed_urls: Sequence[str]) -> None:
        """A lease row for every feed (new rows are free)."""
        with self._tx("adding feed leases") as conn:
            conn.execute("INSERT INTO cluster_feed_leases (feed_url) SELECT unnest(%s::text[])"
                         " ON CONFLICT DO NOTHING", (list(feed_urls),))

    def lease_round(self, holder: str, feed_urls: Sequence[str], period: float,
                    decide: Callable[[list[LeaseRow], datetime], LeaseDecision],
                    ) -> tuple[dict[str, datetime], datetime]:
        """One lease round in one transaction: read the rows of ``feed_urls`` not locked by
        another round (SKIP LOCKED), let ``decide`` say what to claim, release and renew,
        apply it. Returns the leases ``holder`` holds afterwards and the database's now."""
        with self._tx("claiming feeds") as conn:
            now = conn.execute("SELECT now()").fetchone()[0]
            rows = [LeaseRow(r[0], r[1], r[2]) for r in conn.execute(
                "SELECT feed_url, holder, lease_until FROM cluster_feed_leases"
                " WHERE feed_url = ANY(%s) ORDER BY lease_until NULLS FIRST, feed_url"
                " FOR UPDATE SKIP LOCKED", (list(feed_urls),))]
            decision = decide(rows, now)
            until = now + timedelta(seconds=period)
            if decision.claim:
                conn.execute(
                    "UPDATE cluster_feed_leases SET takeovers = takeovers + CASE WHEN holder IS"
                    " NOT NULL AND holder != %s THEN 1 ELSE 0 END, holder = %s, lease_until = %s,"
                    " claimed_at = %s WHERE feed_url = ANY(%s)",
                    (holder, holder, until, now, list(decision.claim)))
            if decision.renew:
                conn.execute("UPDATE cluster_feed_leases SET lease_until = %s WHERE holder = %s"
                             " AND feed_url = ANY(%s)", (until, holder, list(decision.renew)))
            if decision.release:
                conn.execute("UPDATE cluster_feed_leases SET holder = NULL, lease_until = NULL"
                             " WHERE holder = %s AND feed_url = ANY(%s)",
                             (holder, list(decision.release)))
            held = {r[0]: r[1] for r in conn.execute(
                "SELECT feed_url, lease_until FROM cluster_feed_leases WHERE holder = %s AND"
                " lease_until > %s AND feed_url = ANY(%s)", (holder, now, list(feed_urls)))}
        return held, now

    def release_all(self, holder: str) -> int:
        """Give back every lease of ``holder`` (a clean stop: others take over at once)."""
        with self._tx("releasing feeds") as conn:
            return int(conn.execute("UPDATE cluster_feed_leases SET holder = NULL,"
                                    " lease_until = NULL WHERE holder = %s", (holder,)).rowcount)

    def leases(self) -> list[LeaseRow]:
        with self._tx("reading feed leases") as conn:
            return [LeaseRow(r[0], r[1], r[2]) for r in conn.execute(
                "SELECT feed_url, holder, lease_until FROM cluster_feed_leases ORDER BY feed_url")]

    # -- items handed to the queue ---------------------------------------------------------

    def queue_items(self, holder: str, feed_url: str, items: Sequence[QueuedItem],
                    defer: Callable[[Any, list[dict[str, Any]]], list[int]]) -> int | None:
        """Mark ``items`` queued and defer their tasks, in ONE transaction.

        Fenced by the lease: None (nothing written) when ``holder`` no longer holds
        ``feed_url``'s lease. ``defer(connection, task_args)`` enqueues on this
        transaction's connection (procrastinate's ``configure(connection=...)``) and
        returns the job ids. An item already queued is not queued again. Returns how
        many were queued.
        """
        with self._tx(f"queueing items of {feed_url}") as conn:
            held = conn.execute(
                "SELECT 1 FROM cluster_feed_leases WHERE feed_url = %s AND holder = %s AND"
                " lease_until > now() FOR UPDATE", (feed_url, holder)).fetchone()
            if held is None:
                return None
            fresh: list[QueuedItem] = []
            for item in items:
                inserted = conn.execute(
                    "INSERT INTO cluster_queued_items (feed_url, guid, content_hash) VALUES"
                    " (%s,%s,%s) ON CONFLICT DO NOTHING RETURNING guid",
                    (feed_url, item.guid, item.content_hash)).fetchone()
                if inserted is not None:
                    fresh.append(item)
            if not fresh:
                return 0
            job_ids = defer(conn, [item.task_args for item in fresh])
            with conn.cursor() as cur:
                cur.executemany("UPDATE cluster_queued_items SET job_id = %s WHERE feed_url = %s"
                                " AND guid = %s", [(job_id, feed_url, item.guid)
                                                   for job_id, item in zip(job_ids, fresh,
                                                                           strict=True)])
        return len(fresh)

    def queued(self, feed_url: str, guids: Sequence[str], hashes: Sequence[str],
               ) -> tuple[set[str], set[str]]:
        """Of these guids and content hashes, those queued and not recorded yet."""
        with self._tx("reading queued items") as conn:
            rows = conn.execute(
                "SELECT guid, content_hash FROM cluster_queued_items WHERE feed_url = %s AND"
                " (guid = ANY(%s) OR content_hash = ANY(%s))",
                (feed_url, list(guids), [h for h in hashes if h])).fetchall()
        return {r[0] for r in rows}, {r[1] for r in rows if r[1]}

    def item_done(self, feed_url: str, guid: str) -> None:
        """The item was recorded (by the worker): no longer queued."""
        with self._tx("clearing a queued item") as conn:
            conn.execute("DELETE FROM cluster_queued_items WHERE feed_url = %s AND guid = %s",
                         (feed_url, guid))

    def queued_count(self) -> int:
        with self._tx("counting queued items") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM cluster_queued_items").fetchone()[0])

    # -- host politeness -------------------------------------------------------------------

    def acquire_slot(self, host: str, holder: str, *, limit: int, hold: float) -> int | None:
        """Take one of ``host``'s ``limit`` request slots for ``hold`` seconds (its lease:
        a dead process's slot frees itself). None when all are busy, or the host is paused."""
        with self._tx(f"taking a request slot for {host}") as conn:
            paused = conn.execute("SELECT 1 FROM cluster_host_pauses WHERE host = %s AND"
                                  " until > now()", (host,)).fetchone()
            if paused is not None:
                return None
            conn.execute("INSERT INTO cluster_host_slots (host, slot) SELECT %s, generate_series(0,"
                         " %s - 1) ON CONFLICT DO NOTHING", (host, limit))
            row = conn.execute(
                "SELECT slot FROM cluster_host_slots WHERE host = %s AND slot < %s AND"
                " (until IS NULL OR until <= now()) ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED",
                (host, limit)).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE cluster_host_slots SET holder = %s, until = now() +"
                         " make_interval(secs => %s) WHERE host = %s AND slot = %s",
                         (holder, hold, host, row[0]))
            return int(row[0])

    def release_slot(self, host: str, slot: int, holder: str) -> None:
        with self._tx(f"giving back a request slot for {host}") as conn:
            conn.execute("UPDATE cluster_host_slots SET holder = NULL, until = NULL WHERE host = %s"
                         " AND slot = %s AND holder = %s", (host, slot, holder))

    def slots_in_use(self, host: str) -> list[tuple[str | None, datetime | None]]:
        with self._tx("reading request slots") as conn:
            return [(r[0], r[1]) for r in conn.execute(
                "SELECT holder, until FROM cluster_host_slots WHERE host = %s AND until > now()",
                (host,))]

    def pause_host(self, host: str, seconds: float, status: int | None) -> float:
        """No request to ``host`` for ``seconds`` (a longer pause already set stands).
        Returns the seconds the host now waits."""
        with self._tx(f"pausing {host}") as conn:
            row = conn.execute(
                "INSERT INTO cluster_host_pauses (host, until, status) VALUES (%s, now() +"
                " make_interval(secs => %s), %s) ON CONFLICT (host) DO UPDATE SET until ="
                " GREATEST(cluster_host_pauses.until, excluded.until), status = excluded.status"
                " RETURNING EXTRACT(EPOCH FROM until - now())", (host, seconds, status)).fetchone()
        return float(row[0])

    def host_pause(self, host: str) -> float | None:
        """Seconds until ``host`` may be asked again; None when it may now."""
        with self._tx(f"reading the pause of {host}") as conn:
            row = conn.execute("SELECT EXTRACT(EPOCH FROM until - now()) FROM cluster_host_pauses"
                               " WHERE host = %s AND until > now()", (host,)).fetchone()
        return float(row[0]) if row else None
