"""The pure lease decisions of the scale-out pollers (monitor/cluster/leases.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.cluster.leases import (
    Lease,
    fair_share,
    is_free,
    may_poll,
    needs_renewal,
    plan_leases,
    process_alive,
    slots_free,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PERIOD = timedelta(seconds=60)


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def test_a_lease_is_free_when_unheld_or_expired_and_taken_when_live() -> None:
    assert is_free(Lease("f", None, None), NOW)
    assert is_free(Lease("f", "p1", later(-1)), NOW)
    assert is_free(Lease("f", "p1", NOW), NOW)  # expiry is exclusive: at the instant it is gone
    assert not is_free(Lease("f", "p1", later(1)), NOW)


def test_fair_share_rounds_up_and_one_poller_takes_everything() -> None:
    assert fair_share(10, 1) == 10
    assert fair_share(10, 3) == 4
    assert fair_share(10, 0) == 10  # no live poller counted yet: this one is live
    assert fair_share(0, 3) == 0


def test_a_poll_starts_only_when_the_lease_outlives_its_budget() -> None:
    budget = timedelta(seconds=30)
    assert may_poll(later(30), NOW, budget)
    assert not may_poll(later(29), NOW, budget)
    assert not may_poll(None, NOW, budget)


def test_renewal_is_due_below_five_sixths_of_the_period() -> None:
    assert not needs_renewal(later(60), NOW, PERIOD)
    assert not needs_renewal(later(51), NOW, PERIOD)
    assert needs_renewal(later(49), NOW, PERIOD)
    assert needs_renewal(None, NOW, PERIOD)


def test_a_lone_poller_claims_every_free_feed() -> None:
    leases = [Lease(f"f{i}", None, None) for i in range(5)]
    plan = plan_leases("p1", leases, live_pollers=1, now=NOW, period=PERIOD)
    assert plan.claim == ("f0", "f1", "f2", "f3", "f4")
    assert plan.release == () and plan.renew == ()


def test_a_dead_pollers_expired_feeds_are_taken_over_but_live_ones_are_not() -> None:
    leases = [Lease("a", "dead", later(-5)), Lease("b", "alive", later(40)),
              Lease("c", "dead", later(-1))]
    plan = plan_leases("p1", leases, live_pollers=2, now=NOW, period=PERIOD)
    assert plan.claim == ("a", "c")  # share ceil(3/2) = 2; b is held by a live lease


def test_claims_stop_at_the_fair_share_so_a_new_poller_gets_work() -> None:
    leases = [Lease(f"f{i}", None, None) for i in range(10)]
    plan = plan_leases("p1", leases, live_pollers=2, now=NOW, period=PERIOD)
    assert len(plan.claim) == 5


def test_a_poller_over_its_share_releases_the_surplus_and_renews_the_rest() -> None:
    # p1 held all 6 feeds alone; a second poller came up: p1's share is now 3.
    leases = [Lease(f"f{i}", "p1", later(45)) for i in range(6)]
    plan = plan_leases("p1", leases, live_pollers=2, now=NOW, period=PERIOD)
    assert plan.release == ("f3", "f4", "f5")
    assert plan.renew == ("f0", "f1", "f2")
    assert plan.claim == ()


def test_held_leases_with_time_left_are_not_renewed_yet() -> None:
    leases = [Lease("a", "p1", later(58)), Lease("b", "p1", later(20))]
    plan = plan_leases("p1", leases, live_pollers=1, now=NOW, period=PERIOD)
    assert plan.renew == ("b",)


def test_the_share_counts_every_feed_even_those_another_round_has_locked() -> None:
    # Only 2 rows visible (the others are locked by another poller's round): the share
    # is still ceil(8 / 2) = 4, not 1.
    leases = [Lease("a", None, None), Lease("b", None, None)]
    plan = plan_leases("p1", leases, live_pollers=2, now=NOW, period=PERIOD, total=8)
    assert plan.claim == ("a", "b")


def test_a_process_is_live_for_three_beats() -> None:
    beat = timedelta(seconds=10)
    assert process_alive(later(-29), NOW, beat)
    assert not process_alive(later(-30), NOW, beat)
    assert not process_alive(None, NOW, beat)


def test_host_slots_free_counts_expired_holds_as_free() -> None:
    assert slots_free([later(5), later(-1), None], NOW, 4) == 3
    assert slots_free([later(5)] * 5, NOW, 4) == 0
