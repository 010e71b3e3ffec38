"""``python -m tests.helpers.wedged ...``: the real ``newsmon`` whose event loop wedges itself.

``NEWSMON_TEST_WEDGE_AFTER=seconds`` after start-up, the event-loop thread
blocks for good (as a deadlocked stage would). Proves the watchdog is fed by
the scheduler, not by a thread that outlives it. Test-only, so it lives here,
not in the package.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from monitor.runtime.daemon import Daemon

WEDGE_AFTER_ENV = "NEWSMON_TEST_WEDGE_AFTER"

_start = Daemon.start


async def _start_then_arm_the_wedge(self: Daemon, *, paused: bool = False) -> None:
    await _start(self, paused=paused)
    after = float(os.environ[WEDGE_AFTER_ENV])

    def wedge() -> None:
        logging.getLogger("monitor.runtime.daemon").warning("test wedge: blocking the event loop")
        time.sleep(3600)

    asyncio.get_running_loop().call_later(after, wedge)


if __name__ == "__main__":  # patched only in the daemon's own process, never in pytest's
    from monitor.cli import main

    Daemon.start = _start_then_arm_the_wedge  # type: ignore[method-assign]  # the test's wedge
    main()
