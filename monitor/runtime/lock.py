"""One daemon per database: an ``flock`` on ``<database>.lock`` that can explain itself.

``newsmon run`` takes the lock before it opens the database and holds it until
it exits (the kernel drops it when the process dies, SIGKILL included, so a
crash never leaves a stale lock behind). The file holds the holder's PID,
start time and role, so a second ``run`` refuses with who holds it and since
when. Helpers (``run --delivery-only`` / ``--poll-only``) take no lock: they
cooperate with the daemon through the outbox claims.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from monitor.errors import NewsmonError
from monitor.records import iso, utcnow


class DatabaseLocked(NewsmonError):
    """Another ``newsmon run`` holds the database."""


def lock_path(database: Path) -> Path:
    return Path(f"{database}.lock")


class DaemonLock:
    """The held lock (``release()`` or process exit frees it)."""

    def __init__(self, path: Path, fd: int, holder: dict[str, str]) -> None:
        self.path = path
        self._fd: int | None = fd
        self.holder = holder

    @classmethod
    def acquire(cls, database: Path, *, role: str = "daemon") -> DaemonLock:
        """Take the lock, or raise :class:`DatabaseLocked` naming its holder."""
        path = lock_path(database)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            pid = holder.get("pid", "?")
            since = holder.get("since", "?")
            raise DatabaseLocked(
                f"another newsmon run (pid {pid}, {holder.get('role', 'daemon')}, since {since})"
                f" holds {database} (lock {path}): stop it first, or run this one as a helper"
                " with --delivery-only or --poll-only") from None
        except OSError:
            os.close(fd)
            raise
        holder = {"pid": str(os.getpid()), "since": iso(utcnow()) or "", "role": role}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        return cls(path, fd, holder)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _read(fd: int) -> dict[str, str]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    return {}
