"""Talking to systemd: ``sd_notify`` and the watchdog's notion of progress.

``Notifier`` sends ``READY=1``, ``STATUS=``, ``WATCHDOG=1``, ``RELOADING=1``
and ``STOPPING=1`` as AF_UNIX datagrams to ``$NOTIFY_SOCKET`` (a path, or
``@name`` for the abstract namespace). Without ``$NOTIFY_SOCKET`` (not under
systemd) every call is a no-op.

``ProgressMonitor`` decides whether the daemon deserves a ``WATCHDOG=1``. The
ping is sent by a scheduler job (``Daemon.heartbeat``) on the event loop, never
by a free-running thread: a wedged loop sends nothing and systemd restarts the
service after ``WatchdogSec=``. Even when the heartbeat runs, the ping is
withheld while a poll has been running longer than ``poll_stall_timeout``,
when no poll has finished for far longer than the feeds' intervals, or when
the items that arrive have all failed processing for ``poll_stall_timeout``
(polls that finish are not enough: the workers must be processing).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)



class Notifier:
    """sd_notify over a datagram socket; silent when not run by systemd."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` (``WATCHDOG_PID`` must be us)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if raw.isdigit() and int(raw) > 0 and (not pid or pid == str(os.getpid())):
            usec = int(raw)
        return cls(address, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """How often to ping: half of ``WatchdogSec=``, as systemd recommends."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):
            return b"\0" + self.address[1:].encode()  # the abstract namespace
        return self.address

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram. False if it could not be sent."""
        if self.address is None:
            return False
        message = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self._target())
        except OSError as exc:
            # systemd gone or the socket unreachable: not a reason to stop working.
            log.debug("sd_notify %s failed: %s", fields, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets newer systemd (Type=notify-reload) match the reload.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


@dataclass
class ProgressMonitor:
    """Tracks polls in flight and finished, to tell a working daemon from a wedged one.

    ``idle_limit``: with feeds to poll, the longest a daemon may go without
    finishing any poll (a few of the shortest intervals plus the stall limit).
    """

    stall_timeout: float
    idle_limit: float | None
    clock: Callable[[], float] = time.monotonic
    started: float = 0.0  # set to the clock's time in __post_init__
    last_finished: float | None = None
    _inflight: dict[int, tuple[str, float]] = field(default_factory=dict)
    _next_token: int = 0
    # Items that arrive and fail, in a row (reset by any item processed): the pool or
    # the stages are broken while polls still finish.
    items_failing: int = 0
    items_failing_since: float | None = None
    items_failing_reason: str | None = None

    def __post_init__(self) -> None:
        self.started = self.clock()

    def poll_started(self, feed: str) -> int:
        """Record a poll starting; returns the token to pass to ``poll_finished``."""
        self._next_token += 1
        self._inflight[self._next_token] = (feed, self.clock())
        return self._next_token

    def poll_finished(self, token: int) -> None:
        self._inflight.pop(token, None)
        self.last_finished = self.clock()

    def items_done(self, *, processed: int, failed: int, reason: str | None = None) -> None:
        """Record what a finished poll did with the items that arrived."""
        if processed:
            self.items_failing, self.items_failing_since, self.items_failing_reason = 0, None, None
        elif failed:
            self.items_failing += failed
            self.items_failing_reason = reason or self.items_failing_reason
            if self.items_failing_since is None:
                self.items_failing_since = self.clock()

    def reset_idle(self) -> None:
        """After a reload: the new schedule gets a fresh allowance."""
        self.started = self.clock()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def problem(self) -> str | None:
        """Why the watchdog must not be fed now, or None when progress is fine."""
        now = self.clock()
        for feed, since in self._inflight.values():
            if now - since > self.stall_timeout:
                return f"poll of {feed} has been running for {now - since:.0f}s"
        if self.items_failing_since is not None and now - self.items_failing_since > self.stall_timeout:
            why = f" (last: {self.items_failing_reason})" if self.items_failing_reason else ""
            return (f"item processing has failed for {now - self.items_failing_since:.0f}s:"
                    f" {self.items_failing} items, none processed{why}")
        if self.idle_limit is not None:
            last = max(self.last_finished or 0.0, self.started)
            if now - last > self.idle_limit:
                return f"no poll has finished for {now - last:.0f}s"
        return None
