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
import gzip
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.memory import peak_rss_mb  # noqa: E402

HTML_DIR = REPO.parent / "shared" / "fixtures" / "html"


def load_pages() -> list[bytes]:
    files = sorted((HTML_DIR / "html").glob("*.html.gz"))
    if not files:
        raise SystemExit(f"no pages under {HTML_DIR}: the shared data set must sit beside the checkout")
    return [gzip.decompress(f.read_bytes()) for f in files]


def feed_xml(port: int, count: int, round_no: int) -> bytes:
    items = "".join(
        f"<item><title>Benchmark article {i}</title>"
        f"<link>http://127.0.0.1:{port}/page/{round_no}/{i}</link>"
        f"<guid>r{round_no}-{i}</guid><description>Article {i} of the benchmark.</description></item>"
        for i in range(count)
    )
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{escape('bench')}</title>{items}</channel></rss>").encode()


def serve(port_queue: multiprocessing.Queue, pages: list[bytes]) -> None:
    """The loopback site: /feed/<round>.xml and /page/<round>/<i>."""
    from aiohttp import web

    async def feed(request: web.Request) -> web.Response:
        round_no = int(request.match_info["round"])
        return web.Response(body=feed_xml(request.app["port"], len(pages), round_no),
                            content_type="application/rss+xml")

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=pages[int(request.match_info["i"])], content_type="text/html",
                            charset="utf-8")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/feed/{round}.xml", feed)
        app.router.add_get("/page/{round}/{i}", page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        app["port"] = port
        port_queue.put(port)
        await asyncio.Event().wait()

    asyncio.run(main())


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
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(queue, pages),
                                                          daemon=True)
    server.start()
    port = queue.get(timeout=30)
    try:
        baseline = extract_only(pages)
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(run_pipeline(port, args.workers, args.rounds, Path(tmp)))
    finally:
        server.terminate()

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
