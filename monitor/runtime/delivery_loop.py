"""The daemon's sending: one long-lived loop that delivers due alerts, then waits.

A loop, not an interval job: a slow channel delays the next run instead of piling
up "maximum number of running instances" skips. Each run sends every due batch
(``Runtime.deliver`` → ``delivery/deliverer``); after a full batch it goes again at
once, else it waits ``delivery.interval`` (read each time: a reload applies). At stop,
sends not yet marked are recorded and this run's claims freed; a send the stop
deadline cut off stays claimed and is sent again at the next start (and logged so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from monitor.config import Config
from monitor.delivery.deliverer import DeliveryReport
from monitor.runtime.assembly import Runtime
from monitor.runtime.metrics import Metrics
from monitor.storage import StoreError

__all__ = ["DeliveryHost", "DeliveryLoop"]

log = logging.getLogger(__name__)


class DeliveryHost(Protocol):
    """What the loop needs of the daemon (both change on a reload: read each time)."""

    config: Config
    runtime: Runtime | None
    stopping: asyncio.Event
    metrics: Metrics
    in_flight: set[asyncio.Task]  # jobs the daemon's stop waits for

    def database_fault(self, error: str) -> None: ...


class DeliveryLoop:
    def __init__(self, host: DeliveryHost) -> None:
        self.host = host
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def run_once(self) -> DeliveryReport | None:
        """One delivery run (every due batch); None when skipped or abandoned."""
        host = self.host
        runtime = host.runtime
        if runtime is None or host.stopping.is_set():
            return None
        task = asyncio.current_task()
        if task is not None:
            host.in_flight.add(task)
        runtime.active += 1
        started = time.monotonic()
        try:
            report = await runtime.deliver(should_stop=host.stopping.is_set)
        except asyncio.CancelledError:
            # The stop deadline passed during a send: it cannot be cancelled. Its row
            # stays claimed and in flight; the next start sends it again (and says so).
            runtime.deliverer.abandoned = True
            log.warning("delivery: the send in flight was abandoned at the stop deadline;"
                        " it is sent again at the next start (it may arrive twice)")
            return None
        except StoreError as exc:
            log.error("delivery: %s", exc)
            host.database_fault(str(exc))
            return None
        finally:
            runtime.active -= 1
            host.in_flight.discard(task)
        host.metrics.observe_delivery(sent=report.sent, failed=report.failed, dead=report.dead,
                                      seconds=time.monotonic() - started)
        return report

    async def _loop(self) -> None:
        """Deliver, then wait ``delivery.interval`` or go again at once after a full batch;
        until the daemon stops."""
        stopping = self.host.stopping
        while not stopping.is_set():
            try:
                report = await self.run_once()
            except Exception:  # a bug must not end delivery for the daemon's life
                log.exception("delivery: internal error")
                report = None
            if stopping.is_set():
                return
            if report is not None and report.messages >= self.host.config.delivery.batch:
                continue  # more is due: no wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.host.config.delivery.interval)

    async def stop(self) -> None:
        """End the loop; record sends not yet marked, free this run's claims."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, timeout=0.5)
        runtime = self.host.runtime
        if runtime is None or runtime.delivering:
            return  # the thread still sends: its claim stays for the next start
        deliverer, outbox = runtime.deliverer, runtime.delivery_storage.outbox
        try:
            if not await asyncio.to_thread(deliverer.flush_marks, outbox):
                log.warning("%d sent message(s) could not be marked sent: the next start sends"
                            " them again", deliverer.unmarked)
            await asyncio.to_thread(outbox.release_claims, deliverer.owner)
        except StoreError as exc:
            log.warning("delivery: could not release claims at stop: %s", exc)
