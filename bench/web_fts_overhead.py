"""What the full-text index costs the daemon: ``bench/pipeline.py``'s end-to-end run
(fetch, parse, fetch pages, extract + analyse + match in the worker pool, store) with the
FTS insert of ``record_item`` on, and with it skipped, alternately, short runs.

The insert is skipped by wrapping ``sqlite_utils.Database.execute`` in this process (the
storage thread runs here; the workers never write), so nothing else changes.

    .venv/bin/python bench/web_fts_overhead.py            # 3 pairs of 1 round (181 pages each)
    .venv/bin/python bench/web_fts_overhead.py --pairs 5 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import load_pages, run_pipeline, serve

FTS_INSERT = "INSERT INTO articles_fts (rowid"


@contextmanager
def without_fts() -> Iterator[list[int]]:
    """Skip the FTS insert of ``record_item``; yields the count of skipped inserts."""
    import sqlite_utils

    skipped = [0]
    original = sqlite_utils.Database.execute

    def execute(self: Any, sql: str, parameters: Any = None) -> Any:
        if sql.startswith(FTS_INSERT):
            skipped[0] += 1
            return original(self, "SELECT 1")
        return original(self, sql, parameters) if parameters is not None else original(self, sql)

    sqlite_utils.Database.execute = execute  # type: ignore[method-assign]
    try:
        yield skipped
    finally:
        sqlite_utils.Database.execute = original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the 181 pages per run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    pages = load_pages()
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(queue, pages), daemon=True)
    server.start()
    port = queue.get(timeout=30)
    rates: dict[str, list[float]] = {"with FTS": [], "without FTS": []}
    try:
        for n in range(args.pairs):
            # Alternate which goes first: the machine's load drifts.
            order = ("with FTS", "without FTS") if n % 2 == 0 else ("without FTS", "with FTS")
            for label in order:
                with tempfile.TemporaryDirectory() as tmp:
                    if label == "with FTS":
                        result = asyncio.run(run_pipeline(port, args.workers, args.rounds, Path(tmp)))
                    else:
                        with without_fts() as skipped:
                            result = asyncio.run(run_pipeline(port, args.workers, args.rounds, Path(tmp)))
                        assert skipped[0] == result["articles"], (skipped, result["articles"])
                rate = result["articles"] / result["seconds"]
                rates[label].append(rate)
                print(f"pair {n + 1} {label:>11}: {result['articles']} articles in {result['seconds']:.2f} s"
                      f" = {rate:.1f}/s", flush=True)
    finally:
        server.terminate()
    with_fts, without = statistics.median(rates["with FTS"]), statistics.median(rates["without FTS"])
    print(f"median: with FTS {with_fts:.1f} articles/s, without {without:.1f} articles/s:"
          f" the index costs {(without - with_fts) / without:+.1%} of the pipeline's throughput")


if __name__ == "__main__":
    main()
