"""Prometheus metrics for one daemon, in its own registry (no global state).

Counters are fed by the daemon as polls finish (``observe_poll``), as articles
come back from the workers (``observe_processed``: stage timings and matches by
topic) and as deliveries end; the alert-state gauge is refreshed from the
database when ``/metrics`` is scraped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor.models import ProcessedArticle
from monitor.records import ChannelHealthRow

log = logging.getLogger(__name__)
CONTENT_TYPE = CONTENT_TYPE_LATEST
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
ALERT_STATES = ("pending", "sent", "dead")


class Metrics:
    """Every metric of one daemon, registered in ``self.registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter("newsmon_polls", "Feed polls, by result.", ["result"], registry=r)
        self.poll_errors = Counter("newsmon_poll_errors", "Failed feed polls, by error kind.",
                                   ["kind"], registry=r)
        self.items_new = Counter("newsmon_items_new", "New feed items stored.", registry=r)
        self.articles = Counter("newsmon_articles_processed",
                                "Articles extracted, analysed and matched.", registry=r)
        self.matches = Counter("newsmon_matches", "Topic matches, by topic.", ["topic"],
                               registry=r)
        self.alerts_queued = Counter("newsmon_alerts_queued", "Alerts written to the outbox.",
                                     registry=r)
        self.deliveries = Counter("newsmon_deliveries", "Alert delivery attempts, by result.",
                                  ["result"], registry=r)
        self.alerts = Gauge("newsmon_alerts", "Alerts in the outbox, by state.", ["state"],
                            registry=r)
        self.stage_seconds = Histogram("newsmon_stage_seconds", "Time spent per stage.",
                                       ["stage"], buckets=_STAGE_BUCKETS, registry=r)
        self.database_errors = Counter("newsmon_database_errors",
                                       "Database failures (locked, full, ...).", registry=r)
        self.up = Gauge("newsmon_up", "1 while the daemon runs.", registry=r)
        self.last_poll = Gauge("newsmon_last_poll_timestamp_seconds",
                               "Unix time the last poll finished.", registry=r)
        # Per channel, refreshed from the database like the alert counts.
        self.channel_pending = Gauge("newsmon_channel_pending", "Alerts waiting, by channel.",
                                     ["channel"], registry=r)
        self.channel_dead = Gauge("newsmon_channel_dead", "Dead-lettered alerts, by channel.",
                                  ["channel"], registry=r)
        self.channel_failures = Gauge("newsmon_channel_consecutive_failures",
                                      "Failed sends in a row, by channel.", ["channel"],
                                      registry=r)
        self.channel_last_success = Gauge(
            "newsmon_channel_last_success_timestamp_seconds",
            "Unix time of the channel's last successful send.", ["channel"], registry=r)
        self.channel_last_failure = Gauge(
            "newsmon_channel_last_failure_timestamp_seconds",
            "Unix time of the channel's last failed send.", ["channel"], registry=r)

    def observe_poll(self, *, ok: bool, not_modified: bool, unchanged: bool,
                     error_kind: str | None, new_items: int, alerts: int, seconds: float,
                     finished_at: float, not_due: bool = False) -> None:
        """One finished poll (the fields of ``cycles.PollOutcome``)."""
        if not_due:  # the job ticked, the feed's next poll is later: nothing fetched
            self.polls.labels(result="not_due").inc()
            return
        if not ok:
            result = "failed"
            self.poll_errors.labels(kind=error_kind or "error").inc()
            if error_kind == "database":
                self.database_errors.inc()
        elif not_modified:
            result = "not_modified"
        elif unchanged:
            result = "unchanged"
        else:
            result = "ok"
        self.polls.labels(result=result).inc()
        self.items_new.inc(new_items)
        self.alerts_queued.inc(alerts)
        self.stage_seconds.labels(stage="poll").observe(seconds)
        self.last_poll.set(finished_at)

    def observe_processed(self, results: Iterable[ProcessedArticle]) -> None:
        """Worker results: stage timings (extract, analyse_match) and matches by topic."""
        for result in results:
            self.articles.inc()
            for stage, seconds in result.timings.items():
                self.stage_seconds.labels(stage=stage).observe(seconds)
            for match in result.matches:
                self.matches.labels(topic=match.topic).inc()

    def observe_delivery(self, *, sent: int, failed: int, dead: int, seconds: float) -> None:
        self.deliveries.labels(result="sent").inc(sent)
        self.deliveries.labels(result="failed").inc(failed)
        self.deliveries.labels(result="dead").inc(dead)
        self.stage_seconds.labels(stage="deliver").observe(seconds)

    def set_alert_counts(self, counts: Mapping[str, int]) -> None:
        for state in {*ALERT_STATES, *counts}:
            self.alerts.labels(state=state).set(counts.get(state, 0))

    def set_channel_health(self, rows: Iterable[ChannelHealthRow]) -> None:
        for row in rows:
            self.channel_pending.labels(channel=row.channel).set(row.pending)
            self.channel_dead.labels(channel=row.channel).set(row.dead)
            self.channel_failures.labels(channel=row.channel).set(row.consecutive_failures)
            if row.last_success_at is not None:
                self.channel_last_success.labels(channel=row.channel).set(
                    row.last_success_at.timestamp())
            if row.last_failure_at is not None:
                self.channel_last_failure.labels(channel=row.channel).set(
                    row.last_failure_at.timestamp())

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HttpEndpoint:
    """The optional listener: ``GET /healthz`` (200 or 503, JSON) and ``GET /metrics``.

    It runs on the daemon's event loop, so a wedged loop stops answering too,
    which is what a health probe should see.
    """

    def __init__(self, health: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]],
                 metrics: Callable[[], bytes]) -> None:
        self._health = health
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        healthy, payload = await self._health()  # reads the database off the loop
        return web.Response(status=200 if healthy else 503, content_type="application/json",
                            text=json.dumps(payload, default=str))

    async def _metrics_view(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._metrics(), headers={"Content-Type": CONTENT_TYPE})

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_view)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # the bound socket tells the real port when port is 0
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("http: /healthz and /metrics on http://%s:%s", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
