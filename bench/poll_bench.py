"""Poll-cycle benchmark: 2,000 feeds on a loopback server, newsmon against reader.

    .venv/bin/python bench/poll_bench.py [--feeds 2000] [--concurrency 20] [--repeat 3]

The server is an aiohttp app in its own process (its CPU is not the client's),
bound to 127.0.0.1 only. Two scenarios, each after a warm-up cycle that stores
every feed once:

* ``304``: every feed answers 304 Not Modified (it sent an ETag on the warm-up);
* ``unchanged``: every feed answers 200 with the same 50 items as before, and no
  validators (newsmon skips the parse by body hash; reader parses and compares).

Each (tool, scenario, concurrency) runs in a fresh subprocess so peak memory
(``VmHWM``, see bench/memory.py) is that run's alone. newsmon runs its real code path:
``Pipeline.run_cycle`` with a ``Storage`` on a temp file and the real Fetcher; the
warm-up replaces extract/analyse/match by "store the summary" (the measured
cycles never reach that stage: nothing is new). reader runs ``update_feeds``
with ``scheduled=False`` (poll every feed, as ``newsmon once`` does).

"defaults" means each tool as shipped: newsmon concurrency 20 with 4 per host
(every feed here is on one host), reader ``workers=1``. "same" means both at
``--concurrency`` (newsmon's per-host limit raised to match).
It prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import serve_app, server_process  # noqa: E402

ITEMS_304 = 10
ITEMS_UNCHANGED = 50


# --- the server (its own process) -----------------------------------------------------


def feed_body(n: int, items: int) -> bytes:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    parts = [f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
             f"<title>Feed {n}</title><link>http://127.0.0.1/</link><description>bench"
             f"</description>"]
    for i in range(items):
        date = format_datetime(start + timedelta(minutes=n * 100 + i), usegmt=True)
        parts.append(f"<item><title>Feed {n} story {i}: officials meet to discuss the plan"
                     f"</title><link>http://127.0.0.1/a/{n}/{i}</link><guid>f{n}-{i}</guid>"
                     f"<pubDate>{date}</pubDate><description>Summary of story {i} of feed {n},"
                     f" a paragraph of ordinary news text about the day.</description></item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def serve(port_queue: multiprocessing.Queue, feeds: int) -> None:
    from aiohttp import web

    bodies_304 = [feed_body(n, ITEMS_304) for n in range(feeds)]
    bodies_200 = [feed_body(n, ITEMS_UNCHANGED) for n in range(feeds)]

    async def with_etag(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        etag = f'"v1-{n}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=bodies_304[n], content_type="application/rss+xml",
                            headers={"ETag": etag})

    async def unchanged(request: web.Request) -> web.Response:
        return web.Response(body=bodies_200[int(request.match_info["n"])],
                            content_type="application/rss+xml")

    app = web.Application()
    app.router.add_get("/304/{n}.xml", with_etag)
    app.router.add_get("/unchanged/{n}.xml", unchanged)
    serve_app(app, port_queue, backlog=4096)


# --- one measured run (its own process) -------------------------------------------------------


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_newsmon(urls: Sequence[str], concurrency: int | None, repeat: int) -> dict[str, Any]:
    from monitor.config import AnalysisSettings, Config, FeedConfig, FetchSettings
    from monitor.models import Article, ArticleInput, ProcessedArticle
    from monitor.runtime.pipeline import Pipeline
    from monitor.runtime.processor import ArticleProcessor
    from monitor.storage import open_storage

    class SummaryOnly(ArticleProcessor):
        """Warm-up only: store each new item's summary, no extraction or matching."""

        async def process(self, sources: Sequence[ArticleInput]) -> list[ProcessedArticle]:
            return [ProcessedArticle(item=s.item, article=Article(
                title=s.item.title, summary=s.item.summary, body="", text_source="summary",
                url=s.item.link, feed_url=s.feed_url)) for s in sources]

    fetch: dict[str, Any] = {"allow_networks": ("127.0.0.0/8",), "fetch_articles": False,
                             "timeout": 60.0}
    if concurrency is not None:
        fetch.update(concurrency=concurrency, per_host=min(concurrency, 100))
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(database=Path(tmp) / "bench.db", rules=(),
                        feeds=tuple(FeedConfig(url=u) for u in urls),
                        fetch=FetchSettings(**fetch), analysis=AnalysisSettings(workers=0))
        storage = open_storage(config.database_path())
        storage.feeds.sync((f.url, f.name, f.tags) for f in config.feeds)
        processor = SummaryOnly(config, workers=0)

        async def cycles() -> dict[str, Any]:
            pipeline = Pipeline(config, storage, Pipeline.make_fetcher(config), processor)
            try:
                # The warm-up stores up to 100,000 items, one transaction each; with an
                # fsync per commit that alone would take minutes. It runs with
                # synchronous=NORMAL; the measured cycles run as shipped (FULL).
                storage.db.execute("PRAGMA synchronous=NORMAL")
                t0 = time.perf_counter()
                warm = await pipeline.run_cycle()
                warm_s = time.perf_counter() - t0
                assert not warm.failed, warm.failed[0].error
                storage.db.execute("PRAGMA synchronous=FULL")
                times, cpus = [], []
                for _ in range(repeat):
                    c0, t0 = _cpu(), time.perf_counter()
                    report = await pipeline.run_cycle()
                    times.append(time.perf_counter() - t0)
                    cpus.append(_cpu() - c0)
                    assert not report.failed, report.failed[0].error
                    assert all(o.not_modified or o.unchanged for o in report.outcomes)
                return {"warmup_s": warm_s, "cycle_s": times, "cpu_s": cpus}
            finally:
                await pipeline.fetcher.aclose()

        result = asyncio.run(cycles())
        storage.close()
    return result


def run_reader(urls: Sequence[str], concurrency: int | None, repeat: int) -> dict[str, Any]:
    from reader import make_reader

    workers = concurrency or 1  # reader's default is one worker
    with tempfile.TemporaryDirectory() as tmp:
        reader = make_reader(str(Path(tmp) / "reader.sqlite"))
        for url in urls:
            assert url.startswith("http://127.0.0.1:"), url  # loopback only
            reader.add_feed(url)
        t0 = time.perf_counter()
        reader.update_feeds(scheduled=False, workers=workers)
        warm_s = time.perf_counter() - t0
        entries = sum(1 for _ in reader.get_entries())
        assert entries >= len(urls), entries
        times, cpus = [], []
        for _ in range(repeat):
            c0, t0 = _cpu(), time.perf_counter()
            reader.update_feeds(scheduled=False, workers=workers)
            times.append(time.perf_counter() - t0)
            cpus.append(_cpu() - c0)
        broken = [f.url for f in reader.get_feeds() if f.last_exception]
        assert not broken, broken[:3]
        reader.close()
    return {"warmup_s": warm_s, "cycle_s": times, "cpu_s": cpus}


def child(args: argparse.Namespace) -> None:
    urls = [f"http://127.0.0.1:{args.port}/{args.scenario}/{n}.xml" for n in range(args.feeds)]
    runner = run_newsmon if args.tool == "newsmon" else run_reader
    result = runner(urls, args.concurrency or None, args.repeat)
    from bench.memory import peak_rss_mb

    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


# --- orchestration -------------------------------------------------------------------------------


def measure(tool: str, scenario: str, port: int, feeds: int, concurrency: int | None,
            repeat: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", tool, "--scenario", scenario,
           "--port", str(port), "--feeds", str(feeds), "--repeat", str(repeat),
           "--concurrency", str(concurrency or 0)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{tool} {scenario} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20,
                        help="the shared concurrency of the 'same' rows (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="measured cycles per run")
    parser.add_argument("--tools", default="newsmon,reader")
    parser.add_argument("--child", choices=["newsmon", "reader"], help=argparse.SUPPRESS)
    parser.add_argument("--scenario", default="304", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.tool = args.child
        child(args)
        return

    with server_process(serve, args.feeds) as port:
        print(f"{args.feeds} feeds on 127.0.0.1:{port}; {os.cpu_count()} CPUs;"
              f" median of {args.repeat} measured cycles\n")
        print(f"{'tool':8} {'scenario':10} {'concurrency':22} {'cycle s':>8} {'CPU s':>7}"
              f" {'warm-up s':>9} {'peak MB':>8}")
        for scenario in ("304", "unchanged"):
            for label, conc in (("defaults", None), ("same", args.concurrency)):
                for tool in args.tools.split(","):
                    r = measure(tool, scenario, port, args.feeds, conc, args.repeat)
                    shown = (f"{label} ({conc})" if conc else
                             f"defaults ({'20, 4/host' if tool == 'newsmon' else '1'})")
                    print(f"{tool:8} {scenario:10} {shown:22} {_median(r['cycle_s']):8.2f}"
                          f" {_median(r['cpu_s']):7.2f} {r['warmup_s']:9.1f}"
                          f" {r['peak_rss_mb']:8.0f}", flush=True)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


if __name__ == "__main__":
    main()
