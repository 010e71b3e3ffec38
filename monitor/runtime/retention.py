"""Retention and upkeep of the database, run by the daemon every
``service.maintenance_interval`` and by ``newsmon db maintain``.

- Article bodies older than ``service.body_retention`` are dropped
  (``articles.body_pruned = 1``); titles, summaries, matches with their
  evidence, and alerts are kept, so every past alert stays explainable.
- Finished cycle rows older than ``service.cycle_retention`` are deleted.
- ``PRAGMA optimize`` (refreshes the query planner's statistics) and a WAL
  checkpoint every run.
- ``VACUUM`` only when the daemon is idle (no poll in flight) and at least
  ``VACUUM_FREE_FRACTION`` of the file is free pages. We use VACUUM rather
  than incremental vacuum because incremental vacuum needs
  ``auto_vacuum=INCREMENTAL`` from the file's creation (or a full VACUUM to
  switch), and pruning frees pages in bursts, every few hours, not steadily.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.config import ServiceSettings
from monitor.ports import Maintenance
from monitor.records import utcnow

log = logging.getLogger(__name__)

VACUUM_FREE_FRACTION = 0.25


@dataclass
class MaintenanceReport:
    bodies_pruned: int = 0
    cycles_pruned: int = 0
    vacuumed: bool = False
    free_fraction: float = 0.0

    def summary(self) -> str:
        return (f"{self.bodies_pruned} article bodies pruned, {self.cycles_pruned} old cycles"
                f" deleted, {'vacuumed' if self.vacuumed else 'optimised'}"
                f" ({self.free_fraction:.0%} free before)")


def maintain(store: Maintenance, settings: ServiceSettings, *, idle: bool,
             now: datetime | None = None, force_vacuum: bool = False) -> MaintenanceReport:
    """Prune and optimise; VACUUM when ``idle`` and worth it (or ``force_vacuum``)."""
    now = now or utcnow()
    report = MaintenanceReport()
    if settings.body_retention is not None:
        report.bodies_pruned = store.prune_bodies(now - timedelta(seconds=settings.body_retention))
    report.cycles_pruned = store.prune_cycles(now - timedelta(seconds=settings.cycle_retention))
    report.free_fraction = store.free_fraction()
    report.vacuumed = force_vacuum or (idle and report.free_fraction >= VACUUM_FREE_FRACTION)
    store.optimize(vacuum=report.vacuumed)
    return report
