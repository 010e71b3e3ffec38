"""Noticing when the wall clock steps (NTP corrections, VM resume).

APScheduler 3 keeps every job's next run in wall-clock time, and so does the
database (``feeds.next_poll_at``). When the wall clock steps back by an hour,
every job would wait out that hour: no polls, no watchdog pings, and systemd
kills a daemon that is in fact healthy. A forward step is already harmless
(misfires are coalesced: each job runs once).

``ClockGuard`` runs on the event loop's own timer, which is monotonic, so it
keeps running when the scheduler's jobs do not. It compares how far the wall
clock moved with how far the monotonic clock moved; a backward step larger
than the tolerance is reported to ``on_step_back`` with its size in seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class ClockGuard:
    """Calls ``on_step_back(seconds)`` when the wall clock steps back."""

    def __init__(
        self, on_step_back: Callable[[float], None], *, every: float = 2.0,
        tolerance: float = 5.0, wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_step_back = on_step_back
        self.every = every
        self.tolerance = tolerance
        self._wall = wall
        self._monotonic = monotonic
        self._handle: asyncio.TimerHandle | None = None
        self._last: tuple[float, float] | None = None

    def check(self) -> float | None:
        """Compare the clocks once; returns the backward step in seconds, if any."""
        now = (self._wall(), self._monotonic())
        last, self._last = self._last, now
        if last is None:
            return None
        drift = (now[0] - last[0]) - (now[1] - last[1])
        if drift < -self.tolerance:
            self.on_step_back(-drift)
            return -drift
        return None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Check every ``every`` seconds on ``loop`` (monotonic timer) until stopped."""
        self.check()

        def tick() -> None:
            self.check()
            self._handle = loop.call_later(self.every, tick)

        self._handle = loop.call_later(self.every, tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
