"""One ``newsmon run`` per PostgreSQL database, and never beside the cluster processes.

SQLite's daemon takes an ``flock`` (``runtime/lock.py``); a PostgreSQL database has no
file, so the same guard is a **session-level advisory lock** on one fixed key, held on
a connection of its own for the life of the process:

- ``newsmon run`` takes it exclusively (``pg_try_advisory_lock``): a second ``run``,
  or any cluster process, is refused;
- ``newsmon poller`` / ``worker`` / ``deliver`` take it shared
  (``pg_try_advisory_lock_shared``): cluster processes coexist, a ``run`` is refused
  while any of them lives.

The server drops a session's advisory locks when the session ends, so a killed holder
(SIGKILL included) frees the lock at once: its socket closes with the process. A holder
whose machine vanished is dropped by the server's TCP keepalives, set short on this
session (about a minute). The session's ``application_name`` names the process
(``newsmon-run 1234@host``), which is how a refusal says who holds the lock.

If the lock's connection breaks (a server restart), a watcher thread reconnects and
takes the lock again; if another process took it meanwhile, this one stops (SIGTERM to
itself, the ordinary clean stop) rather than run beside it.

Helpers (``run --delivery-only`` / ``--poll-only``) and ``newsmon once`` take no lock,
as on SQLite: they cooperate through the outbox claims.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitor.runtime.lock import DatabaseLocked
from monitor.storage.db import StoreError

__all__ = ["LOCK_KEY", "LOCK_NAME", "Holder", "PgDaemonLock"]

log = logging.getLogger(__name__)

LOCK_NAME = "newsmon single daemon"
# A stable 64-bit key from the name (hashtext() may change between server versions);
# advisory locks are per database, so databases on one server do not collide.
LOCK_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)
_UNSIGNED = LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
_CLASSID, _OBJID = _UNSIGNED >> 32, _UNSIGNED & 0xFFFF_FFFF  # how pg_locks shows a bigint key

# The server gives up on a silent client after idle + interval * count seconds.
KEEPALIVE: dict[str, str | int] = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10,
                                   "tcp_keepalives_count": 3}
CHECK_INTERVAL_S = 15.0  # the watcher's ping of the lock's connection
_APP = re.compile(r"^newsmon-(?P<role>[a-z]+) (?P<pid>\d+)@(?P<host>.*)$")


@dataclass(frozen=True)
class Holder:
    """A session holding the lock, as ``pg_locks`` and ``pg_stat_activity`` show it."""

    role: str  # "run", "poller", "worker", "deliver"; "" when the session is not newsmon's
    pid: str  # the process id on its host (the server's backend pid when unknown)
    host: str
    since: str  # the session's start (ISO), or "?" when the server hides it
    exclusive: bool

    def describe(self) -> str:
        where = f" on {self.host}" if self.host else ""
        return f"pid {self.pid}{where}, since {self.since}"


def application_name(role: str) -> str:
    """``newsmon-<role> <pid>@<host>``, cut to the 63 bytes PostgreSQL keeps."""
    text = f"newsmon-{role} {os.getpid()}@{socket.gethostname()}"
    return text.encode("ascii", "replace")[:63].decode("ascii")


class PgDaemonLock:
    """The held lock: ``release()`` or the end of the process frees it."""

    def __init__(self, url: str, role: str, exclusive: bool, conn: Any,
                 on_lost: Callable[[str], None] | None) -> None:
        self.url = url
        self.role = role
        self.exclusive = exclusive
        self._conn: Any = conn
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="newsmon-pg-lock", daemon=True)
        self._watcher.start()

    # -- taking it ---------------------------------------------------------------------------
    @classmethod
    def acquire(cls, url: str, *, role: str, exclusive: bool,
                on_lost: Callable[[str], None] | None = None) -> PgDaemonLock:
        """Take the lock (``role``: "run" exclusively, a cluster kind shared), or raise
        :class:`DatabaseLocked` naming what holds it; StoreError when the server cannot
        be reached. ``on_lost`` is called (from a thread) if the lock is lost for good;
        by default the process sends itself SIGTERM."""
        return cls(url, role, exclusive, _take(url, role, exclusive), on_lost)

    # -- keeping it --------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(CHECK_INTERVAL_S):
            try:
                self._conn.execute("SELECT 1")
                continue
            except Exception as exc:  # a broken session: its lock is gone with it
                if self._stop.is_set():
                    return
                log.warning("the single-daemon lock's connection broke (%s): taking it again",
                            _first_line(exc))
            with contextlib.suppress(Exception):
                self._conn.close()
            while not self._stop.is_set():
                try:
                    self._conn = _take(self.url, self.role, self.exclusive)
                    log.warning("the single-daemon lock is held again")
                    break
                except DatabaseLocked as exc:
                    message = f"lost the single-daemon lock and another process took it: {exc}"
                    log.error("%s", message)
                    self._lost(message)
                    return
                except StoreError as exc:  # the server is still away: try again later
                    log.warning("cannot take the single-daemon lock again yet: %s", exc)
                    if self._stop.wait(CHECK_INTERVAL_S):
                        return

    def _lost(self, message: str) -> None:
        if self._on_lost is not None:
            self._on_lost(message)
        else:  # the ordinary clean stop of `run` and of the cluster processes
            os.kill(os.getpid(), signal.SIGTERM)

    def release(self) -> None:
        """Unlock and close the session (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._watcher is not threading.current_thread():
            self._watcher.join(timeout=CHECK_INTERVAL_S + 5)
        with contextlib.suppress(Exception):
            self._conn.execute("SELECT pg_advisory_unlock_all()")
        with contextlib.suppress(Exception):
            self._conn.close()


def _take(url: str, role: str, exclusive: bool) -> Any:
    """A new session holding the lock, or DatabaseLocked / StoreError."""
    try:
        import psycopg

        from monitor.storage.postgres import _store_error, connect_postgres, public_database_url
    except ImportError as exc:  # psycopg absent: the message open_storage gives
        raise StoreError("database: a postgresql:// URL needs psycopg: pip install"
                         f" 'newsmon[postgresql]' ({exc.name or exc} is missing)") from None

    db = connect_postgres(url, application=application_name(role), settings=KEEPALIVE)
    conn = db.raw
    function = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
    try:
        # A holder may stop between our try and our look at it: then try again.
        for _attempt in range(3):
            row = conn.execute(f"SELECT {function}(%s)", (LOCK_KEY,)).fetchone()
            if row is not None and row[0]:
                return conn
            holders = _holders(conn)
            if holders:
                raise DatabaseLocked(_refusal(role, public_database_url(url), holders))
        raise DatabaseLocked(f"{public_database_url(url)}: the single-daemon lock stays taken"
                             " by a session that cannot be seen: try again")
    except psycopg.Error as exc:
        conn.close()
        raise _store_error("taking the single-daemon lock", exc) from None
    except BaseException:
        conn.close()
        raise


def _holders(conn: Any) -> list[Holder]:
    """The other sessions holding the lock now, oldest first."""
    rows = conn.execute(
        "SELECT l.pid, l.mode, a.application_name, a.backend_start"
        " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
        " AND l.classid::bigint = %s AND l.objid::bigint = %s"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND l.pid <> pg_backend_pid()"
        " ORDER BY a.backend_start NULLS LAST, l.pid", (_CLASSID, _OBJID)).fetchall()
    holders = []
    for backend, mode, app, started in rows:
        found = _APP.match(app or "")
        since = started.isoformat(timespec="seconds") if started is not None else "?"
        exclusive = mode == "ExclusiveLock"
        if found:
            holders.append(Holder(found["role"], found["pid"], found["host"], since, exclusive))
        else:
            holders.append(Holder("", f"{backend} (server backend)", "", since, exclusive))
    return holders


def _refusal(role: str, label: str, holders: list[Holder]) -> str:
    """Why ``role`` cannot start, naming what runs (the same shape as SQLite's message)."""
    daemon = next((h for h in holders if h.exclusive), None)
    if role == "run" and daemon is not None:
        return (f"another newsmon run ({daemon.describe()}, daemon) holds {label}"
                f" (advisory lock {LOCK_NAME!r}): stop it first, or run this one as a helper"
                " with --delivery-only or --poll-only")
    if daemon is not None:
        return (f"a newsmon run ({daemon.describe()}) holds {label}"
                f" (advisory lock {LOCK_NAME!r}): a {role} beside it would poll or send"
                " outside its schedule and double alerts; stop it first, then start the"
                " cluster processes (docs/scale-out.md)")
    cluster = "; ".join(f"{h.role or 'unknown'} {h.describe()}" for h in holders)
    return (f"the cluster runs on {label} ({len(holders)} process(es): {cluster}): a newsmon"
            " run beside it would poll feeds outside the pollers' leases and double alerts;"
            " stop the cluster processes first, or keep to them (docs/scale-out.md)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
