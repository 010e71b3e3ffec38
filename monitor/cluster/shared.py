"""What every scale-out process shares: its identity and heartbeat row, the database URL,
signals, and per-host politeness kept in the database instead of one process's memory.

- :class:`Heartbeat` registers the process (kind, host, pid) and beats its row with
  the work done so far; ``newsmon status`` lists the rows that beat recently.
- :class:`GatedFetcher` wraps the ``Fetcher``: every request first takes one of
  its host's ``fetch.per_host`` slots in ``cluster_host_slots`` (a leased row, so a
  killed process's slot frees itself), so "4 requests in flight per host" holds
  across all pollers and workers; a host paused by a 429/503 gets none.
- :class:`SharedHostsPipeline` is the ``Pipeline`` whose host pauses are read from
  and written to ``cluster_host_pauses`` (the in-memory ``HostBackoff`` mirrors them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import socket
import time
from typing import Any

from monitor.config import Config, FeedConfig
from monitor.errors import ConfigError, FetchError, StorageError
from monitor.ingest.cadence import HOST_BACKOFF_STATUSES, host_backoff_seconds, origin_of
from monitor.ingest.fetch import Fetcher
from monitor.models import FetchResult
from monitor.runtime.cycles import PollOutcome
from monitor.runtime.pipeline import Pipeline, PollPlan
from monitor.runtime.systemd import Notifier
from monitor.storage.leases import ClusterStore, connect_cluster, install_cluster_schema

__all__ = ["GatedFetcher", "Heartbeat", "SharedHostsPipeline", "StopSignal", "cluster_url",
           "host_key", "open_cluster", "process_id"]

log = logging.getLogger(__name__)

HOST = socket.gethostname()
SLOT_WAIT_MIN, SLOT_WAIT_MAX = 0.02, 0.25  # seconds between tries for a busy host's slot


def process_id(kind: str) -> str:
    """``<kind>:<host>:<pid>:<token>``: unique per process start."""
    return f"{kind}:{HOST}:{os.getpid()}:{secrets.token_hex(3)}"


def cluster_url(config: Config) -> str:
    """The config's PostgreSQL URL; a ConfigError when the database is SQLite."""
    target = str(config.database)
    if target.split("://", 1)[0].lower() not in ("postgresql", "postgres") or "://" not in target:
        raise ConfigError(
            f"the scale-out processes need a PostgreSQL database (database: postgresql://…),"
            f" not the SQLite file {config.database}; on one machine use `newsmon run`"
            " (see docs/scale-out.md)")
    return target


def open_cluster(url: str, *, application: str) -> ClusterStore:
    """Connect, install the cluster tables and the queue's schema (idempotent)."""
    from monitor.cluster.queue import install_queue_schema

    conn = connect_cluster(url, application=application)
    try:
        install_cluster_schema(conn, install_queue_schema)
    except BaseException:
        conn.close()
        raise
    return ClusterStore(conn)


def host_key(url: str) -> str | None:
    """``scheme://host:port`` of a URL: the unit of politeness."""
    origin = origin_of(url)
    if origin is None:
        return None
    scheme, host, port = origin
    return f"{scheme}://{host}:{port}"


class Heartbeat:
    """This process's row in ``cluster_processes``, and its systemd notifications:
    READY once started, WATCHDOG after each beat the database took, STOPPING."""

    def __init__(self, store: ClusterStore, kind: str, *, detail: dict[str, Any] | None = None,
                 notifier: Notifier | None = None) -> None:
        self.store = store
        self.kind = kind
        self.id = process_id(kind)
        self.work_done = 0
        self.detail = dict(detail or {})
        self.notifier = notifier if notifier is not None else Notifier.from_env()

    def register(self) -> None:
        self.store.register_process(self.id, self.kind, HOST, os.getpid(), self.detail)

    def ready(self, status: str) -> None:
        self.notifier.ready(status)

    async def beat(self) -> bool:
        """Write the beat; False (logged) when the database refused it."""
        try:
            await asyncio.to_thread(self.store.beat, self.id, self.work_done, self.detail)
        except StorageError as exc:
            log.warning("heartbeat not written: %s", exc)
            return False
        self.notifier.watchdog()
        self.notifier.status(f"{self.kind}: {self.work_done} done")
        return True

    def stopped(self) -> None:
        self.notifier.stopping()
        with contextlib.suppress(StorageError):
            self.store.stop_process(self.id)


class StopSignal:
    """SIGTERM/SIGINT set :attr:`event`; used as a context manager around a process's loop."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __enter__(self) -> StopSignal:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.event.set)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until a stop; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout=max(0.0, seconds))
        return self.event.is_set()


class GatedFetcher:
    """A ``Fetcher`` whose every request holds one of its host's shared slots."""

    def __init__(self, inner: Fetcher, store: ClusterStore, holder: str, *, per_host: int,
                 timeout: float, rng: random.Random | None = None) -> None:
        self.inner = inner
        self.store = store
        self.holder = holder
        self.per_host = per_host
        self.timeout = timeout
        self._rng = rng or random.Random()
        self.waited = 0.0  # seconds spent waiting for slots (a metric)

    async def fetch(self, url: str, **kwargs: Any) -> FetchResult:
        host = host_key(url)
        if host is None:
            return await self.inner.fetch(url, **kwargs)
        slot = await self._take(host)
        try:
            return await self.inner.fetch(url, **kwargs)
        finally:
            with contextlib.suppress(StorageError):  # it expires on its own otherwise
                await asyncio.to_thread(self.store.release_slot, host, slot, self.holder)

    async def _take(self, host: str) -> int:
        """A slot for ``host``; waits while all are busy, at most one fetch timeout."""
        started = time.monotonic()
        deadline = started + self.timeout
        hold = self.timeout + 5.0  # the fetch's own deadline, and a margin
        while True:
            slot = await asyncio.to_thread(self.store.acquire_slot, host, self.holder,
                                           limit=self.per_host, hold=hold)
            if slot is not None:
                self.waited += time.monotonic() - started
                return slot
            if time.monotonic() > deadline:
                paused = await asyncio.to_thread(self.store.host_pause, host)
                raise FetchError(
                    f"no request slot for {host} within {self.timeout:g}s"
                    + (f" (it asked for a pause: {paused:.0f}s left)" if paused else
                       f" ({self.per_host} requests in flight from other processes)"),
                    kind="timeout")
            await asyncio.sleep(self._rng.uniform(SLOT_WAIT_MIN, SLOT_WAIT_MAX))

    async def aclose(self) -> None:
        await self.inner.aclose()


class SharedHostsPipeline(Pipeline):
    """A ``Pipeline`` whose 429/503 host pauses live in the database, for every process."""

    cluster: ClusterStore
    _pause_tasks: set[asyncio.Task[Any]]

    def share_hosts(self, cluster: ClusterStore) -> None:
        self.cluster = cluster
        self._pause_tasks = set()

    async def plan(self, feed: FeedConfig, outcome: PollOutcome, *, force: bool) -> PollPlan | None:
        await self.learn_pause(feed.url)
        return await super().plan(feed, outcome, force=force)

    async def learn_pause(self, url: str) -> None:
        """Mirror the database's pause of ``url``'s host into the in-memory backoff."""
        host = host_key(url)
        if host is None:
            return
        try:
            paused = await asyncio.to_thread(self.cluster.host_pause, host)
        except StorageError as exc:
            log.warning("could not read the pause of %s: %s", host, exc)
            return
        if paused:
            self.hosts.defer(url, paused, self.clock())

    def _back_off_host(self, url: str, exc: FetchError) -> None:
        super()._back_off_host(url, exc)
        host = host_key(url)
        if exc.status not in HOST_BACKOFF_STATUSES or host is None:
            return
        seconds = host_backoff_seconds(exc.retry_after, self.config.fetch)
        task = asyncio.get_running_loop().create_task(self._share_pause(host, seconds, exc.status))
        self._pause_tasks.add(task)
        task.add_done_callback(self._pause_tasks.discard)

    async def _share_pause(self, host: str, seconds: float, status: int | None) -> None:
        try:
            await asyncio.to_thread(self.cluster.pause_host, host, seconds, status)
        except StorageError as exc:
            log.warning("could not share the pause of %s: %s", host, exc)


def gated(pipeline_fetcher: Fetcher, config: Config, store: ClusterStore, holder: str,
          ) -> GatedFetcher:
    return GatedFetcher(pipeline_fetcher, store, holder, per_host=config.fetch.per_host,
                        timeout=config.fetch.timeout)

