"""The daemon's database calls, made on one thread of their own, never on the loop.

SQLite waits up to its busy timeout (10 s) for a lock another process holds, and
a slow disk stalls a commit: on the event loop, either stops every poll, the
HTTP endpoint and the watchdog ping. :class:`StorageThread` runs each call of
the pipeline's connection on a single thread (one writer; a ``Storage`` is used
by one thread at a time), and keeps :class:`StorageHealth`: errors in a row,
time spent waiting on locks, the last "disk full".
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from monitor.errors import StorageError

__all__ = ["REPEATED_ERRORS", "StorageHealth", "StorageThread"]

T = TypeVar("T")

REPEATED_ERRORS = 3  # storage errors in a row that make the daemon unhealthy
SLOW_CALL_S = 1.0  # a call this long counts as waiting (a lock, a slow disk)


@dataclass
class StorageHealth:
    """What the daemon knows about its database from the calls it made."""

    errors_in_a_row: int = 0
    errors_total: int = 0
    last_error: str | None = None
    lock_waits: int = 0  # calls that waited on a lock (slow, or failed "locked")
    lock_wait_seconds: float = 0.0
    disk_full: int = 0  # "database or disk is full" errors since start
    last_disk_full: str | None = None

    def observe(self, seconds: float, error: str | None) -> None:
        locked = error is not None and "locked" in error
        if locked or seconds >= SLOW_CALL_S:
            self.lock_waits += 1
            self.lock_wait_seconds += seconds
        if error is None:
            self.errors_in_a_row = 0
            return
        self.errors_in_a_row += 1
        self.errors_total += 1
        self.last_error = error[:300]
        if "full" in error:
            self.disk_full += 1
            self.last_disk_full = self.last_error

    def problem(self) -> str | None:
        """Why storage makes the daemon unhealthy now (errors repeat), or None."""
        if self.errors_in_a_row >= REPEATED_ERRORS:
            return (f"storage: {self.errors_in_a_row} database errors in a row"
                    f" (last: {self.last_error})")
        return None

    def summary(self) -> str:
        """One line for ``newsmon status`` (written to the database when it changes)."""
        line = (f"lock waits {self.lock_waits} ({self.lock_wait_seconds:.0f}s),"
                f" disk full {self.disk_full}, errors {self.errors_total}")
        return line + (f" (last: {self.last_error})" if self.last_error else "")

    def to_dict(self) -> dict[str, Any]:
        return {"errors_in_a_row": self.errors_in_a_row, "errors_total": self.errors_total,
                "last_error": self.last_error, "lock_waits": self.lock_waits,
                "lock_wait_seconds": round(self.lock_wait_seconds, 1),
                "disk_full": self.disk_full, "last_disk_full": self.last_disk_full}


class StorageThread:
    """Runs database calls on one dedicated thread (see the module doc)."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self.health = StorageHealth()

    async def call(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` on the database thread; its result or its error."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="newsmon-db")
        started = time.monotonic()
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(func, *args, **kwargs))
        except StorageError as exc:
            self.health.observe(time.monotonic() - started, str(exc))
            raise
        self.health.observe(time.monotonic() - started, None)
        return result

    def close(self) -> None:
        """Let a call in flight finish, then stop the thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
