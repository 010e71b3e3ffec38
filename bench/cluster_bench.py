"""Scale-out throughput: articles per second with 1, 2 and 4 ``newsmon worker`` processes
on PostgreSQL, beside the single-process SQLite pipeline, and the queue's own cost.

The corpus is bench/pipeline.py's: the 181 real pages of ../shared/fixtures/html/, served
by a loopback site in its own process (its CPU is not counted against newsmon). For
each worker count, a fresh feed of all 181 pages is polled once in this process (the
poller's code: fetch, parse, select, then items + tasks queued in one transaction),
and the worker processes (started and warmed beforehand: spaCy and the rules load on
their first task) fetch the pages, extract, analyse, match and record. The time runs
from the queue's commit to the last item recorded.

Printed beside it: the single-process pipeline (``Pipeline.poll`` with its worker
pool, SQLite) with 1 and 2 pool workers, and the queue round trip alone (defer in
one transaction + a worker's fetch, run and ack of a task that does nothing).

The PostgreSQL server is started here (initdb in a temp folder, tests/helpers/postgres.py)
with durable commits (fsync and synchronous_commit on), as in production.

    python bench/cluster_bench.py [--workers 1,2,4] [--skip-sqlite] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import load_pages, serve_pages, server_process  # noqa: E402
from bench.pipeline import run_pipeline  # noqa: E402

NOOP_TASK = "bench.noop"


def durable_postgres(root: Path) -> Any:
    """A PostgreSQL server for the bench, switched to durable commits."""
    from tests.helpers.postgres import start_postgres

    server = start_postgres(root)
    for setting in ("fsync = on", "synchronous_commit = on", "full_page_writes = on"):
        server.psql(f"ALTER SYSTEM SET {setting}")
    server.psql("SELECT pg_reload_conf()")
    return server


def write_config(folder: Path, url: str, port: int, feeds: list[str]) -> Path:
    """A config (JSON is YAML) for the worker processes and the in-process poller."""
    data = {
        "database": url,
        "rules": [str(REPO / "config" / "rules")],
        "feeds": [{"url": f"http://127.0.0.1:{port}/feed/{name}.xml?n={count}", "name": name}
                  for name, count in (f.split(":") for f in feeds)],
        "fetch": {"allow_networks": ["127.0.0.0/8"], "max_items_per_poll": 1000,
                  "concurrency": 20, "per_host": 20, "backlog_as_seen": False},
        "analysis": {"workers": 0},
        "service": {"log_level": "warning"},
    }
    path = folder / "newsmon.yaml"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def count(url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def poll_once(config_path: Path, url: str, feed_name: str) -> tuple[int, float]:
    """Poll one feed in this process with the poller's code; (items queued, seconds)."""
    from monitor.cluster.poller import Poller
    from monitor.config import load_config

    config = load_config(config_path)
    feed = next(f for f in config.feeds if f.name == feed_name)
    poller = Poller(config, url, lease=600, feeds=[feed])
    await poller.start()
    try:
        await poller.lease_round()
        for task in poller.tasks.values():
            task.cancel()  # the bench polls by hand
        assert poller.pipeline is not None
        started = time.perf_counter()
        outcome = await poller.pipeline.poll(feed, force=True)
        seconds = time.perf_counter() - started
        if not outcome.ok:
            raise SystemExit(f"poll failed: {outcome.error}")
        return outcome.new_items, seconds
    finally:
        await poller.stop()


def wait_items(url: str, feed_name: str, target: int, timeout: float) -> float:
    """Wait until ``target`` items of the feed are recorded; the moment it happened."""
    deadline = time.monotonic() + timeout
    sql = (f"SELECT COUNT(*) FROM items JOIN feeds ON feeds.id = items.feed_id"
           f" WHERE feeds.name = '{feed_name}'")
    while time.monotonic() < deadline:
        if count(url, sql) >= target:
            return time.perf_counter()
        time.sleep(0.02)
    raise SystemExit(f"{feed_name}: {count(url, sql)} of {target} items after {timeout:.0f}s")


def start_workers(config: Path, n: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "worker", "--beat", "2"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=(log_dir / f"worker-{n}-{i}.log").open("wb"))
        for i in range(n)]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        proc.terminate()
    for proc in workers:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def cluster_run(url: str, port: int, n: int, pages: int, folder: Path) -> dict[str, float]:
    """One worker count: warm the workers, then time a feed of ``pages`` articles."""
    warm, measured = f"warm{n}:{2 * n}", f"round{n}:{pages}"
    config = write_config(folder, url, port, [warm, measured])
    workers = start_workers(config, n, folder)
    try:
        queued, _ = asyncio.run(poll_once(config, url, f"warm{n}"))
        wait_items(url, f"warm{n}", queued, 120)
        queued, poll_s = asyncio.run(poll_once(config, url, f"round{n}"))
        committed = time.perf_counter()
        done = wait_items(url, f"round{n}", queued, 300)
    finally:
        stop_workers(workers)
    seconds = done - committed
    return {"workers": n, "articles": queued, "seconds": round(seconds, 2),
            "articles_per_s": round(queued / seconds, 1),
            "poll_and_queue_s": round(poll_s, 3),
            "poll_and_queue_per_item_ms": round(1000 * poll_s / max(1, queued), 2)}


async def queue_round_trip(url: str, jobs: int) -> dict[str, float]:
    """Defer ``jobs`` no-op tasks in one transaction, then run them with one worker."""
    import procrastinate

    from monitor.cluster.queue import install_queue_schema
    from monitor.storage.leases import connect_cluster, install_cluster_schema

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    app.task(name=NOOP_TASK, queue="bench_noop")(_noop_task)
    conn = connect_cluster(url)
    install_cluster_schema(conn, install_queue_schema)
    try:
        started = time.perf_counter()
        with conn.transaction():
            app.tasks[NOOP_TASK].configure(connection=conn).batch_defer(*[{"n": i}
                                                                          for i in range(jobs)])
        defer_s = time.perf_counter() - started
        one_by_one = time.perf_counter()
        for i in range(50):  # the poller's case: a transaction per feed, a few tasks in each
            with conn.transaction():
                app.tasks[NOOP_TASK].configure(connection=conn).defer(n=i)
        single_s = (time.perf_counter() - one_by_one) / 50
    finally:
        conn.close()
    async with app.open_async():
        started = time.perf_counter()
        await app.run_worker_async(queues=["bench_noop"], concurrency=1, wait=False,
                                   install_signal_handlers=False, delete_jobs="successful",
                                   listen_notify=False)
        run_s = time.perf_counter() - started
    total = jobs + 50
    return {"jobs": total, "defer_batched_ms_per_job": round(1000 * defer_s / jobs, 3),
            "defer_own_transaction_ms": round(1000 * single_s, 2),
            "worker_fetch_run_ack_ms_per_job": round(1000 * run_s / total, 2)}


async def _noop_task(n: int) -> None:
    return None


def sqlite_runs(port: int, worker_counts: list[int]) -> list[dict[str, float]]:
    """bench/pipeline.py's single-process pipeline (SQLite), for the same corpus."""
    results = []
    for n in worker_counts:
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(run_pipeline(port, n, 1, Path(tmp)))
        results.append({"workers": n, "articles": result["articles"],
                        "seconds": round(result["seconds"], 2),
                        "articles_per_s": round(result["articles"] / result["seconds"], 1)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--jobs", type=int, default=500, help="no-op jobs for the queue's cost")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    import logging
    logging.basicConfig(level=logging.WARNING)
    pages = load_pages()
    root = Path(tempfile.mkdtemp(prefix="newsmon-cluster-bench-"))
    root.chmod(0o755)  # the server runs as the postgres user under root
    figures: dict[str, Any] = {"cores": os.cpu_count(), "load_average": os.getloadavg()}
    with server_process(serve_pages, pages) as port:
        pg = durable_postgres(root / "pg")
        try:
            figures["queue"] = asyncio.run(queue_round_trip(pg.new_database("queue"), args.jobs))
            url = pg.new_database("bench")
            folder = root / "work"
            folder.mkdir()
            figures["postgresql"] = [cluster_run(url, port, n, len(pages), folder) for n in counts]
            if not args.skip_sqlite:
                figures["sqlite"] = sqlite_runs(port, [n for n in (1, 2) if n <= (os.cpu_count() or 1)])
        finally:
            pg.stop()
            with contextlib.suppress(OSError):
                shutil.rmtree(root)
    cores = os.cpu_count() or 1
    base = figures["postgresql"][0]["articles_per_s"] / min(figures["postgresql"][0]["workers"], cores)
    for run in figures["postgresql"]:
        run["per_core_efficiency"] = round(run["articles_per_s"] / min(run["workers"], cores) / base, 2)
    if args.json:
        print(json.dumps(figures))
        return
    q = figures["queue"]
    print(f"machine: {cores} cores, load average {', '.join(f'{x:.1f}' for x in figures['load_average'])}"
          " (shared: figures under load)")
    print(f"queue round trip ({q['jobs']} no-op jobs): defer {q['defer_batched_ms_per_job']} ms/job"
          f" batched, {q['defer_own_transaction_ms']} ms in a transaction of its own;"
          f" worker fetch+run+ack {q['worker_fetch_run_ack_ms_per_job']} ms/job")
    print("PostgreSQL, newsmon worker processes (page fetch + extract + analyse + match + record):")
    for run in figures["postgresql"]:
        print(f"  {run['workers']} worker(s): {run['articles']} articles in {run['seconds']} s ="
              f" {run['articles_per_s']}/s, per-core efficiency {run['per_core_efficiency']}"
              f"  (poll + queue: {run['poll_and_queue_per_item_ms']} ms/item)")
    for run in figures.get("sqlite", []):
        print(f"SQLite, one process, {run['workers']} pool worker(s): {run['articles']} articles in"
              f" {run['seconds']} s = {run['articles_per_s']}/s")


if __name__ == "__main__":
    main()
