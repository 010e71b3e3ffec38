"""Lease decisions for the scale-out processes (pure: values in, values out, clock passed in).

A feed is polled by the poller that holds its lease; a lease is a row (holder,
expiry) in PostgreSQL (``monitor/storage/leases.py``), claimed with ``FOR UPDATE
SKIP LOCKED``. Every moment compared here is the database's clock (``now()`` read
in the same transaction), so pollers on machines with skewed clocks agree.

The rules:

- a lease is *free* when nobody holds it or its expiry has passed: a dead
  poller's feeds are free one lease period after its last renewal at the latest;
- a poller holds at most its *fair share* (``ceil(feeds / live pollers)``), so a
  new poller gets work and a poller never hoards what a restarted one needs;
  above its share it releases the surplus (the feeds it polls last);
- a poll starts only when the lease outlives the poll's time budget (the poll is
  cancelled at that budget): a poll therefore always ends before its lease can
  expire, so two pollers never poll one feed at once, even when one is frozen;
- a lease is renewed when less than five sixths of its period remain (every round
  of a poller, which runs a sixth of a period apart).

Host politeness across processes uses the same shape: ``slots_free`` (at most
``per_host`` requests in flight per host, each slot a leased row) and a shared
"not before" time per host (429/503).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from monitor.storage.leases import LeaseDecision, LeaseRow

__all__ = ["Lease", "LeasePlan", "fair_share", "is_free", "may_poll", "needs_renewal",
           "plan_leases", "process_alive", "slots_free"]

# A lease is renewed when less than this share of its period remains.
RENEW_BELOW = 5 / 6  # with rounds every sixth of a period: renewed every round


# A lease row and a round's plan are each one value, defined where the rows are read and
# written (storage has no imports from here); these are the names the rules use.
Lease = LeaseRow
LeasePlan = LeaseDecision


def is_free(lease: Lease, now: datetime) -> bool:
    """Nobody holds it, or the holder's lease expired (a dead or frozen poller)."""
    return lease.holder is None or lease.until is None or lease.until <= now


def fair_share(feeds: int, pollers: int) -> int:
    """The most feeds one poller should hold: ``ceil(feeds / pollers)`` (one poller: all)."""
    if feeds <= 0:
        return 0
    return math.ceil(feeds / max(1, pollers))


def needs_renewal(until: datetime | None, now: datetime, period: timedelta) -> bool:
    """Renew when less than ``RENEW_BELOW`` of the period remains (or it expired)."""
    if until is None:
        return True
    return until - now < period * RENEW_BELOW


def may_poll(until: datetime | None, now: datetime, budget: timedelta) -> bool:
    """A poll may start only if the lease outlives the poll's whole budget."""
    return until is not None and until - now >= budget


def plan_leases(me: str, leases: Sequence[Lease], *, live_pollers: int, now: datetime,
                period: timedelta, total: int | None = None) -> LeasePlan:
    """Which feeds to claim, release and renew, given the lease rows.

    ``leases`` are the rows as read now (those another poller is deciding on at
    this moment are left out: SKIP LOCKED); ``total`` is how many feeds there are
    in all (default: ``len(leases)``), the base of the fair share; ``live_pollers``
    counts the pollers with a recent heartbeat (this one included). Free feeds are claimed
    in the order given (the storage offers them oldest-expired first) up to the
    fair share; held feeds over the share are released, the latest in the order
    given first; the rest are renewed when due.
    """
    share = fair_share(len(leases) if total is None else total, live_pollers)
    held = [lease for lease in leases if lease.holder == me and not is_free(lease, now)]
    free = [lease.feed for lease in leases if is_free(lease, now)]
    if len(held) > share:
        keep, surplus = held[:share], held[share:]
        return LeasePlan(claim=(), release=tuple(lease.feed for lease in surplus),
                         renew=tuple(lease.feed for lease in keep
                                     if needs_renewal(lease.until, now, period)))
    room = share - len(held)
    return LeasePlan(claim=tuple(free[:room]), release=(),
                     renew=tuple(lease.feed for lease in held
                                 if needs_renewal(lease.until, now, period)))


def process_alive(last_beat: datetime | None, now: datetime, beat: timedelta,
                  *, misses: int = 3) -> bool:
    """A process is live while its last heartbeat is younger than ``misses`` beats."""
    return last_beat is not None and now - last_beat < beat * misses


def slots_free(held_until: Sequence[datetime | None], now: datetime, limit: int) -> int:
    """How many of a host's ``limit`` request slots are free (unheld or expired)."""
    busy = sum(1 for until in held_until if until is not None and until > now)
    return max(0, limit - busy)
