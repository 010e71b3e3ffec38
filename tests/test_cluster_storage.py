"""The scale-out tables on a real PostgreSQL: leases and their takeover, the queue's
transaction, host slots and pauses, heartbeats (monitor/storage/leases.py)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from monitor.cluster import queue
from monitor.cluster.leases import Lease, plan_leases
from monitor.errors import StorageError
from monitor.storage.leases import (
    ClusterStore,
    LeaseDecision,
    LeaseRow,
    QueuedItem,
    connect_cluster,
    install_cluster_schema,
)
from tests.helpers.postgres import PostgresServer

pytestmark = pytest.mark.postgres

FEEDS = [f"http://feeds.test/{i}.xml" for i in range(6)]


@pytest.fixture
def url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database("cluster")


@pytest.fixture
def store(url: str) -> Iterator[ClusterStore]:
    conn = connect_cluster(url)
    install_cluster_schema(conn, queue.install_queue_schema)
    cluster = ClusterStore(conn)
    cluster.sync_feeds(FEEDS)
    try:
        yield cluster
    finally:
        cluster.close()


def second(url: str) -> ClusterStore:
    """Another process's connection to the same database."""
    return ClusterStore(connect_cluster(url))


def decide(me: str, live: int, period: float, rows: list[LeaseRow], now: datetime) -> LeaseDecision:
    plan = plan_leases(me, [Lease(r.feed, r.holder, r.until) for r in rows], live_pollers=live,
                       now=now, period=timedelta(seconds=period), total=len(FEEDS))
    return LeaseDecision(plan.claim, plan.release, plan.renew)


def round_of(store: ClusterStore, me: str, *, live: int = 1, period: float = 30.0) -> set[str]:
    held, _ = store.lease_round(me, FEEDS, period, functools.partial(decide, me, live, period))
    return set(held)


def jobs(store: ClusterStore) -> list[tuple[Any, ...]]:
    return list(store.conn.execute("SELECT id, task_name, args FROM procrastinate_jobs ORDER BY id"))


def test_the_schema_installs_twice_without_harm(url: str, store: ClusterStore) -> None:
    conn = connect_cluster(url)
    try:
        install_cluster_schema(conn, queue.install_queue_schema)
        install_cluster_schema(conn, queue.install_queue_schema)
    finally:
        conn.close()
    assert store.leases()[0].feed in FEEDS


def test_a_task_enqueued_in_a_rolled_back_transaction_does_not_exist(url: str,
                                                                     store: ClusterStore) -> None:
    app = queue.make_app(url)
    conn = store.conn
    with pytest.raises(RuntimeError), conn.transaction():
        ids = queue.defer_on(app, conn, [{"feed_url": FEEDS[0], "item": {"guid": "g"}}])
        assert ids and conn.execute("SELECT COUNT(*) FROM procrastinate_jobs").fetchone()[0] == 1
        raise RuntimeError("the item's write failed")
    assert jobs(store) == []
    with conn.transaction():
        queue.defer_on(app, conn, [{"feed_url": FEEDS[0], "item": {"guid": "g"}}])
    assert [j[1] for j in jobs(store)] == [queue.TASK_NAME]


def test_queued_items_and_their_tasks_commit_together_once(url: str, store: ClusterStore) -> None:
    app = queue.make_app(url)
    defer = functools.partial(queue.defer_on, app)
    assert round_of(store, "p1") == set(FEEDS)
    items = [QueuedItem(f"g{i}", f"h{i}", {"feed_url": FEEDS[0], "n": i}) for i in range(3)]
    assert store.queue_items("p1", FEEDS[0], items, defer) == 3
    assert store.queue_items("p1", FEEDS[0], items, defer) == 0  # already queued: not again
    assert [j[2]["n"] for j in jobs(store)] == [0, 1, 2]
    guids, hashes = store.queued(FEEDS[0], ["g0", "zz"], ["h2"])
    assert guids == {"g0", "g2"} and hashes == {"h0", "h2"}
    store.item_done(FEEDS[0], "g0")
    assert store.queued(FEEDS[0], ["g0"], [])[0] == set()

    # A failing deferral rolls the queued rows back with it.
    def broken(conn: Any, tasks: list[dict[str, Any]]) -> list[int]:
        raise RuntimeError("queue down")

    with pytest.raises(RuntimeError):
        store.queue_items("p1", FEEDS[0], [QueuedItem("g9", "h9", {})], broken)
    assert store.queued(FEEDS[0], ["g9"], [])[0] == set()


def test_queueing_is_fenced_by_the_lease(url: str, store: ClusterStore) -> None:
    app = queue.make_app(url)
    round_of(store, "p1")
    items = [QueuedItem("g", "h", {"feed_url": FEEDS[1]})]
    assert store.queue_items("p2", FEEDS[1], items, functools.partial(queue.defer_on, app)) is None
    assert jobs(store) == []


def test_a_dead_pollers_feeds_are_taken_over_within_one_lease(url: str,
                                                               store: ClusterStore) -> None:
    other = second(url)
    try:
        assert round_of(store, "p1", period=1.0) == set(FEEDS)
        # p1 is live: p2 gets nothing (p1 holds all with time left).
        assert round_of(other, "p2", live=2, period=1.0) == set()
        started = time.monotonic()
        while not (taken := round_of(other, "p2", live=1, period=30.0)):  # p1 stopped renewing
            assert time.monotonic() - started < 3.0, "the leases did not expire"
            time.sleep(0.05)
        assert taken == set(FEEDS)
        assert time.monotonic() - started <= 1.5  # within one lease period (1 s) and a round
        # The old holder can no longer queue anything for them.
        app = queue.make_app(url)
        assert store.queue_items("p1", FEEDS[0], [QueuedItem("g", "h", {})],
                                 functools.partial(queue.defer_on, app)) is None
        assert round_of(store, "p1", live=2, period=30.0) == set()
    finally:
        other.close()


def test_a_second_poller_gets_its_fair_share_and_the_first_releases_it(url: str,
                                                                        store: ClusterStore) -> None:
    other = second(url)
    try:
        assert len(round_of(store, "p1", live=1)) == 6
        assert round_of(other, "p2", live=2) == set()  # nothing free yet
        mine = round_of(store, "p1", live=2)  # p1 sees two pollers: keeps 3, frees 3
        assert len(mine) == 3
        theirs = round_of(other, "p2", live=2)
        assert len(theirs) == 3 and not mine & theirs
        assert {row.holder for row in store.leases()} == {"p1", "p2"}
    finally:
        other.close()


def test_concurrent_lease_rounds_never_give_one_feed_to_two_pollers(url: str,
                                                                    store: ClusterStore) -> None:
    stores = [second(url) for _ in range(3)]
    overlaps: list[set[str]] = []
    held: dict[str, set[str]] = {}
    lock = threading.Lock()

    def poller(index: int) -> None:
        me = f"p{index}"
        for _ in range(15):
            mine = round_of(stores[index], me, live=3, period=0.3)
            with lock:
                held[me] = mine
                now_held = [v for v in held.values()]
                for a in range(len(now_held)):
                    for b in range(a + 1, len(now_held)):
                        if now_held[a] & now_held[b]:
                            overlaps.append(now_held[a] & now_held[b])
            time.sleep(0.02)

    threads = [threading.Thread(target=poller, args=(i,)) for i in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for s in stores:
            s.close()
    # Every row has at most one holder by construction; what matters is that no two
    # rounds returned the same live lease to two pollers.
    assert not overlaps, overlaps[:3]


def test_host_slots_cap_requests_in_flight_and_free_themselves(url: str,
                                                               store: ClusterStore) -> None:
    host = "http://news.test:80"
    taken = [store.acquire_slot(host, f"p{i}", limit=4, hold=30) for i in range(4)]
    assert sorted(s for s in taken if s is not None) == [0, 1, 2, 3]
    assert store.acquire_slot(host, "p9", limit=4, hold=30) is None  # all four in flight
    store.release_slot(host, 2, "p2")
    assert store.acquire_slot(host, "p9", limit=4, hold=0.2) == 2
    assert store.acquire_slot(host, "p8", limit=4, hold=30) is None
    time.sleep(0.3)  # p9 died holding slot 2: its hold expires
    assert store.acquire_slot(host, "p8", limit=4, hold=30) == 2
    assert len(store.slots_in_use(host)) == 4


def test_a_host_pause_is_shared_and_the_longer_one_stands(url: str, store: ClusterStore) -> None:
    host = "http://busy.test:80"
    other = second(url)
    try:
        assert other.host_pause(host) is None
        assert store.pause_host(host, 30, 429) == pytest.approx(30, abs=1)
        assert store.pause_host(host, 5, 503) == pytest.approx(30, abs=1)  # 30 s stands
        assert other.host_pause(host) == pytest.approx(30, abs=1)
        assert other.acquire_slot(host, "p2", limit=4, hold=10) is None  # paused: no slot
    finally:
        other.close()


def test_heartbeats_list_live_processes_only(url: str, store: ClusterStore) -> None:
    store.register_process("worker:h:1:a", "worker", "h", 1, {"queue": "q"})
    store.register_process("poller:h:2:b", "poller", "h", 2)
    store.beat("worker:h:1:a", 7)
    store.stop_process("poller:h:2:b")
    rows = store.processes(within=60)
    assert [(r.kind, r.pid, r.work_done) for r in rows] == [("worker", 1, 7)]
    assert rows[0].detail == {"queue": "q"} and rows[0].beat_age < 5
    assert store.live_count("worker", within=60) == 1
    time.sleep(0.2)
    assert store.processes(within=0.1) == []


def test_errors_say_what_failed_without_the_password(postgres_server: PostgresServer) -> None:
    bad = f"postgresql://newsmon:hunter2@127.0.0.1:{postgres_server.port}/no_such_db"
    with pytest.raises(StorageError) as caught:
        connect_cluster(bad)
    assert "hunter2" not in str(caught.value)
