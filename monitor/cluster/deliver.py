"""``newsmon deliver``: sends due outbox rows; any number of these run side by side.

The deliverer is the single-process one (``delivery/deliverer.py``) over the shared
database's outbox: a row is claimed (owner + lease, in the transaction that reads
it) before it is sent and marked in flight just before the send, so two processes
never send one alert; a channel whose rows a live owner holds is skipped whole by
the others. A claim of a dead process is taken over when its lease expires (at
once on the same host: ``delivery/claims.owner_gone``); the one message that was in
flight is then sent again and logged ("may arrive twice").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from monitor.cluster.shared import Heartbeat, StopSignal
from monitor.config import Config
from monitor.delivery.deliverer import Deliverer, DeliveryReport
from monitor.errors import StorageError
from monitor.runtime.assembly import in_daemon_thread
from monitor.storage.leases import ClusterStore

__all__ = ["DeliverProcess"]

log = logging.getLogger(__name__)

KIND = "deliver"


class DeliverProcess:
    """One delivery process: deliver what is due, beat, wait ``delivery.interval``."""

    def __init__(self, config: Config, url: str) -> None:
        self.config = config
        self.url = url
        self.deliverer = Deliverer(config.channels, config.delivery)  # validates the URLs first
        self.store: ClusterStore | None = None
        self.storage: Any = None
        self.heartbeat: Heartbeat | None = None
        self.sent = 0
        self.sending = False

    async def start(self) -> None:
        from monitor.cluster.shared import open_cluster
        from monitor.storage import open_storage

        # newsmon's schema first: open_storage refuses a database that holds other tables only.
        self.storage = await asyncio.to_thread(open_storage, self.url)
        self.store = await asyncio.to_thread(open_cluster, self.url, application="newsmon-deliver")
        self.heartbeat = Heartbeat(self.store, KIND, detail={"owner": self.deliverer.owner})
        await asyncio.to_thread(self.heartbeat.register)
        log.info("newsmon deliver running: %d channels, owner %s", len(self.config.channels),
                 self.deliverer.owner)
        self.heartbeat.ready(f"deliver: {len(self.config.channels)} channels")

    async def deliver_once(self, stop: StopSignal) -> DeliveryReport:
        """Deliver every due alert (batch by batch) in a daemon thread: apprise blocks."""
        outbox = self.storage.outbox
        self.sending = True
        try:
            report = await in_daemon_thread(lambda: self.deliverer.deliver_due(
                outbox, should_stop=stop.event.is_set))
        finally:
            self.sending = False
        self.sent += report.sent
        for error in report.errors:
            log.warning("delivery: %s", error)
        return report

    async def run(self, stop: StopSignal) -> None:
        await self.start()
        assert self.heartbeat is not None
        try:
            while not stop.event.is_set():
                report: DeliveryReport | None
                try:
                    report = await self.deliver_once(stop)
                except StorageError as exc:
                    log.warning("delivery: %s", exc)
                    report = None
                except Exception:  # a bug must not end delivery for the process's life
                    log.exception("delivery: internal error")
                    report = None
                self.heartbeat.work_done = self.sent
                await self.heartbeat.beat()
                if report is not None and report.messages >= self.config.delivery.batch:
                    continue  # more is due
                if await stop.sleep(self.config.delivery.interval):
                    break
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self.storage is not None and not self.sending:
            outbox = self.storage.outbox
            with contextlib.suppress(StorageError):
                if not await asyncio.to_thread(self.deliverer.flush_marks, outbox):
                    log.warning("%d sent message(s) could not be marked sent: they go again",
                                self.deliverer.unmarked)
                await asyncio.to_thread(outbox.release_claims, self.deliverer.owner)
        if self.heartbeat is not None:
            await asyncio.to_thread(self.heartbeat.stopped)
        if self.store is not None:
            self.store.close()
        if self.storage is not None and not self.sending:
            self.storage.close()
        log.info("newsmon deliver stopped (%d alerts sent)", self.sent)
