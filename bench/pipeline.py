"""End-to-end pipeline throughput on the 181 real pages of ../shared/fixtures/html/.

A loopback server (its own process, so its CPU is not counted against newsmon)
serves one feed whose items link to the 181 pages. newsmon's real code path
(``Pipeline.run_cycle``: fetch, parse, fetch pages, extract + analyse + match in
the worker pool, store) runs them into a fresh database. Printed next to it:
trafilatura's ``extract`` alone on the same pages in one process.

Targets on two cores: at least 25 articles per second end to end, and at least
0.6 times the single-process extract-only rate per core used.

    python bench/pipeline.py [--workers N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import load_pages, serve_pages, server_process  # noqa: E402
from bench.memory import peak_rss_mb  # noqa: E402

# bench/web_fts_overhead.py takes the corpus and its site from here.
serve = serve_pages


def extract_only(pages: list[bytes]) -> dict[str, float]:
    import trafilatura

    from monitor.analysis.extract import EXTRACT_OPTIONS

    rates = {}
    for label, options in (("defaults", {}), ("newsmon's options", EXTRACT_OPTIONS)):
        started = time.perf_counter()
        for html in pages:
            trafilatura.extract(html, **options)
        rates[label] = len(pages) / (time.perf_counter() - started)
    return rates


async def run_pipeline(port: int, workers: int, rounds: int, db_dir: Path) -> dict[str, float]:
    from monitor.config import Config, FeedConfig, FetchSettings
    from monitor.runtime.pipeline import Pipeline
    from monitor.runtime.processor import ArticleProcessor
    from monitor.storage import open_storage

    config = Config(
        database=db_dir / "bench.db",
        rules=(REPO / "config" / "rules",),
        feeds=tuple(FeedConfig(url=f"http://127.0.0.1:{port}/feed/{r}.xml", name=f"bench-{r}")
                    for r in range(rounds)),
        fetch=FetchSettings(allow_networks=("127.0.0.0/8",), max_items_per_poll=1000,
                            concurrency=20, per_host=20),
    )
    storage = open_storage(config.database_path())
    processor = ArticleProcessor(config, workers=workers)
    started = time.perf_counter()
    processor.start()
    # Warm the pool: every worker loads spaCy and compiles the rules once.
    from monitor.models import ArticleInput, FeedItem
    warm = [ArticleInput(item=FeedItem(guid=str(i), link=None, canonical_url=None, title="warm",
                                       summary="warm up", published=None), feed_url="")
            for i in range(max(workers, 1) * 2)]
    await processor.process(warm)
    startup = time.perf_counter() - started
    pipeline = Pipeline(config, storage, Pipeline.make_fetcher(config), processor)
    articles = 0
    started = time.perf_counter()
    for feed in config.feeds:  # one feed per round: a fresh set of item ids each time
        outcome = await pipeline.poll(feed)
        if not outcome.ok:
            raise SystemExit(f"poll failed: {outcome.error}")
        articles += outcome.new_items
    elapsed = time.perf_counter() - started
    worker_peaks = [peak_rss_mb(pid) for pid in processor.worker_pids()]
    from_pages = storage.db.execute(
        "SELECT COUNT(*) FROM articles WHERE text_source = 'page'").fetchone()[0]
    await pipeline.fetcher.aclose()
    processor.close()
    storage.close()
    return {"articles": articles, "seconds": elapsed, "startup": startup,
            "from_pages": from_pages, "worker_peak_mb": max(worker_peaks, default=0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=2,
                        help="feeds of all 181 pages each (each round is new items)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    pages = load_pages()
    with server_process(serve_pages, pages) as port:
        baseline = extract_only(pages)
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(run_pipeline(port, args.workers, args.rounds, Path(tmp)))

    rate = result["articles"] / result["seconds"]
    cores = min(args.workers, os.cpu_count() or 1) or 1
    figures = {
        "pages": len(pages),
        "articles": result["articles"],
        "articles_from_page_text": result["from_pages"],
        "workers": args.workers,
        "pool_startup_s": round(result["startup"], 2),
        "pipeline_s": round(result["seconds"], 2),
        "pipeline_articles_per_s": round(rate, 1),
        "extract_only_per_s_defaults": round(baseline["defaults"], 1),
        "extract_only_per_s_newsmon_options": round(baseline["newsmon's options"], 1),
        "ratio_per_core_vs_defaults": round(rate / cores / baseline["defaults"], 2),
        "ratio_per_core_vs_same_options": round(rate / cores / baseline["newsmon's options"], 2),
        "peak_rss_main_mb": round(peak_rss_mb(), 1),
        "peak_rss_largest_worker_mb": round(result["worker_peak_mb"], 1),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"pages: {len(pages)} real article pages, {args.rounds} rounds, {args.workers} workers")
    print(f"pool start-up (spaCy + rules per worker): {figures['pool_startup_s']} s (once per daemon)")
    print(f"end to end: {result['articles']} articles in {figures['pipeline_s']} s ="
          f" {figures['pipeline_articles_per_s']} articles/s"
          f" ({result['from_pages']} judged on page text)   target >= 25/s")
    print(f"trafilatura.extract alone, one process: {figures['extract_only_per_s_defaults']}/s"
          f" (defaults), {figures['extract_only_per_s_newsmon_options']}/s (newsmon's options)")
    print(f"per core used: {figures['ratio_per_core_vs_defaults']} x extract-only (defaults),"
          f" {figures['ratio_per_core_vs_same_options']} x (same options)   target >= 0.6")
    print(f"peak memory: main {figures['peak_rss_main_mb']} MB,"
          f" largest worker {figures['peak_rss_largest_worker_mb']} MB")


if __name__ == "__main__":
    main()
