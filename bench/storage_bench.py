"""What the storage costs on SQLite and on PostgreSQL, side by side (issue 15).

    python bench/storage_bench.py [--items 300] [--alerts 300] [--runs 4] [--url postgresql://…]

Figures, per backend:
  item write     ``ItemRepository.record_item``: item + article + 1 match + 2 outbox rows,
                 one transaction (the pipeline's write), ms each
  outbox cycle   one delivery of one alert: ``claim_due`` + ``begin_send`` + ``mark_delivered``,
                 ms each (three transactions)
  claim race     ``--runs`` delivery runs on their own connections claiming the same 4
                 channels at once until the outbox is empty: alerts claimed a second, and
                 whether any row was claimed twice (it must never be)

Without ``--url`` a throw-away PostgreSQL server is started on loopback (as the tests do,
``tests/helpers/postgres.py``) and switched to durable commits (``fsync``,
``synchronous_commit``, ``full_page_writes`` on) so that both backends pay for their
fsyncs: SQLite runs with ``synchronous=FULL`` (WAL). A shared machine's figures are
noisy: compare the columns, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.identity import item_planner
from monitor.records import utcnow
from monitor.storage import Storage, open_storage
from tests.helpers.storage import FEED_A, make_item, processed, two_feeds

CHANNELS = ("ch0", "ch1", "ch2", "ch3")


def item_writes(store: Storage, n: int) -> list[float]:
    """ms per ``record_item`` (one match, two outbox rows)."""
    feed_id = store.feeds.get(FEED_A).id
    costs = []
    for i in range(n):
        item = make_item(f"bench-{i}", f"https://n.example/bench/{i}", title=f"Truce talks {i}")
        done = processed(item)
        start = time.perf_counter()
        store.items.record_item(feed_id, "A", done, article_key=f"url:{item.link}",
                                plan=item_planner(done.matches, lambda _m: ["ch0", "ch1"]))
        costs.append((time.perf_counter() - start) * 1000)
    return costs


def outbox_cycles(store: Storage, n: int) -> list[float]:
    """ms per claim + begin_send + mark_delivered of one alert."""
    costs = []
    for _ in range(n):
        start = time.perf_counter()
        lease = utcnow() + timedelta(minutes=5)
        claimed = store.outbox.claim_due("ch0", "bench", lease_until=lease, limit=1)
        if not claimed:
            break
        ids = [c.alert.id for c in claimed]
        assert store.outbox.begin_send(ids, "bench", lease_until=lease)
        store.outbox.mark_delivered("ch0", ids, kind="alert")
        costs.append((time.perf_counter() - start) * 1000)
    return costs


def claim_race(target: Path | str, runs: int) -> tuple[float, int, int]:
    """(alerts claimed a second, alerts claimed, rows claimed twice) for ``runs`` racing runs."""
    stores = [open_storage(target) for _ in range(runs)]
    claimed: list[list[int]] = [[] for _ in range(runs)]
    barrier = threading.Barrier(runs)

    def run(i: int) -> None:
        barrier.wait()
        owner = f"run-{i}"
        while True:
            got_any = False
            for channel in CHANNELS:
                lease = utcnow() + timedelta(minutes=5)
                rows = stores[i].outbox.claim_due(channel, owner, lease_until=lease, limit=5)
                if rows:
                    got_any = True
                    ids = [r.alert.id for r in rows]
                    if stores[i].outbox.begin_send(ids, owner, lease_until=lease):
                        stores[i].outbox.mark_delivered(channel, ids, kind="alert")
                        claimed[i].extend(ids)
            if not got_any and not stores[i].outbox.due_channels():
                return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(runs)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for s in stores:
        s.close()
    every = Counter(a for got in claimed for a in got)
    return len(every) / elapsed, len(every), sum(1 for c in every.values() if c > 1)


def fill_outbox(store: Storage, n: int) -> None:
    for i in range(n):
        store.outbox.enqueue_notice(f"bench-{i}", "t", "b", [CHANNELS[i % len(CHANNELS)]])


def bench(target: Path | str, args: argparse.Namespace) -> dict[str, str]:
    store = two_feeds(target)
    try:
        writes = item_writes(store, args.items)
        cycles = outbox_cycles(store, args.items * 2)
        fill_outbox(store, args.alerts)
    finally:
        store.close()
    rate, count, twice = claim_race(target, args.runs)
    return {
        "item write, ms (median / p95)": f"{statistics.median(writes):.2f} / "
                                         f"{sorted(writes)[int(len(writes) * 0.95)]:.2f}",
        "outbox cycle, ms (median / p95)": f"{statistics.median(cycles):.2f} / "
                                           f"{sorted(cycles)[int(len(cycles) * 0.95)]:.2f}",
        f"claim race ({args.runs} runs), alerts/s": f"{rate:.0f} ({count} alerts)",
        "rows claimed twice": str(twice),
    }


def durable_server(root: Path) -> tuple[str, object]:
    """A throw-away server (tests/helpers/postgres.py), restarted with durable commits: the
    test server runs with fsync off, which would flatter PostgreSQL against SQLite's FULL."""
    import subprocess

    from tests.helpers.postgres import start_postgres

    server = start_postgres(root)
    server.stop()
    options = (f"-c listen_addresses=127.0.0.1 -c port={server.port}"
               f" -c unix_socket_directories={server.data} -c fsync=on -c synchronous_commit=on"
               " -c full_page_writes=on")
    subprocess.run([*server.prefix, str(server.bin / "pg_ctl"), "-D", str(server.data), "-l",
                    str(server.log), "-o", options, "-w", "-t", "60", "start"], check=True,
                   capture_output=True, timeout=90)
    assert server.psql("SHOW fsync").strip() == "on"
    return server.new_database("bench"), server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--url", help="an empty PostgreSQL database to use (else one is started)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="newsmon-storage-bench-"))
    pg_root = Path(tempfile.mkdtemp(prefix="newsmon-storage-bench-pg-"))  # its own: it is chowned
    server = None
    try:
        url = args.url
        if url is None:
            url, server = durable_server(pg_root)
        results = {"sqlite": bench(folder / "bench.db", args), "postgresql": bench(url, args)}
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(pg_root, ignore_errors=True)
    width = max(len(k) for k in results["sqlite"])
    print(f"{'':{width}}  {'sqlite':>22}  {'postgresql':>22}")
    for key in results["sqlite"]:
        print(f"{key:{width}}  {results['sqlite'][key]:>22}  {results['postgresql'][key]:>22}")


if __name__ == "__main__":
    main()
