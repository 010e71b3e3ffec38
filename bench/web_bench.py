"""Workspace figures: fill N synthetic articles through ``record_item`` (FTS upkeep
included), then time the overview, article and search pages over HTTP and print
their p95, the database size per 1,000 articles and the FTS share of the write.

    .venv/bin/python bench/web_bench.py                 # 100,000 articles
    .venv/bin/python bench/web_bench.py --articles 20000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.identity import item_planner, no_channels
from monitor.ingest.parse import canonical_url, content_hash
from monitor.models import Article, EvidenceSentence, FeedItem, ProcessedArticle, TermHit, TopicMatch
from monitor.storage import open_storage

_VOCABULARY = ("ceasefire talks peace deal kremlin kyiv sanctions grain corridor drone strike"
               " energy grid parliament election minister border refugees aid negotiators"
               " truce front line shelling brussels summit tariff market inflation weather"
               " football cup museum festival")
WORDS = tuple(_VOCABULARY.split(" "))
TOPICS = ("ceasefire", "negotiation", "sanctions", "energy")


def sentence(rng: random.Random, n: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def fill(path: Path, count: int, seed: int = 7) -> tuple[float, float]:
    """Returns (seconds spent recording, of which in the FTS insert)."""
    rng = random.Random(seed)
    store = open_storage(path)
    store.feeds.sync([("https://bench.example/rss", "bench", [])])
    feed = store.feeds.get("https://bench.example/rss")
    assert feed is not None
    start = time.perf_counter()
    base = datetime.now(UTC) - timedelta(days=365)
    for n in range(count):
        link = f"https://bench.example/a/{n}"
        title = sentence(rng, 9)
        body = "\n\n".join(sentence(rng, rng.randint(12, 28)) for _ in range(rng.randint(8, 22)))
        item = FeedItem(guid=link, link=link, canonical_url=canonical_url(link), title=title,
                        summary=sentence(rng, 20), published=base + timedelta(minutes=5 * n),
                        content_hash=content_hash(title, str(n)))
        article = Article(title=title, summary=item.summary, body=body, text_source="page", url=link)
        matches = tuple(TopicMatch(
            topic=t, score=5.0, threshold=3.0, severity="high",
            hits=(TermHit(term="ceasefire*", text="ceasefire", field="body", sentence=1, weight=2.0),),
            evidence=(EvidenceSentence("body", "A ceasefire.", "A **ceasefire**.", ("ceasefire",)),))
            for t in TOPICS if rng.random() < 0.08)
        processed = ProcessedArticle(item=item, article=article, matches=matches)
        store.items.record_item(feed.id, "bench", processed, article_key=f"url:{link}",
                                plan=item_planner(matches, no_channels))
    elapsed = time.perf_counter() - start
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return elapsed, 0.0


def fts_share(path: Path, samples: int = 2000) -> float:
    """Time of the FTS insert alone, as a share of a full record_item, on ``samples`` rows."""
    import sqlite3

    db = sqlite3.connect(path)
    rows = db.execute("SELECT id, title, summary, body FROM articles ORDER BY id LIMIT ?",
                      (samples,)).fetchall()
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS fts_probe USING fts5(title, summary, body,"
               " tokenize='porter unicode61 remove_diacritics 2')")
    start = time.perf_counter()
    with db:
        for r in rows:
            db.execute("INSERT INTO fts_probe (rowid, title, summary, body) VALUES (?,?,?,?)", r)
    per_row = (time.perf_counter() - start) / max(1, len(rows))
    db.execute("DROP TABLE fts_probe")
    db.close()
    return per_row


async def time_pages(path: Path, article_count: int, rounds: int) -> dict[str, list[float]]:
    import aiohttp

    from monitor.config import Config
    from monitor.web import WebSettings, serve

    config = Config.model_validate({"database": str(path), "rules": [
        str(Path(__file__).resolve().parent.parent / "config" / "rules")]})
    url_box: list[str] = []
    ready = asyncio.Event()

    def on_ready(url: str) -> None:
        url_box.append(url.rstrip("/"))
        ready.set()

    task = asyncio.create_task(serve(config, WebSettings(port=0), on_ready))
    await ready.wait()
    base = url_box[0]
    rng = random.Random(3)
    times: dict[str, list[float]] = {"overview": [], "article": [], "search": []}
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            for name, path_ in (("overview", "/"),
                                ("article", f"/article/{rng.randint(1, article_count)}"),
                                ("search", f"/search?q={rng.choice(WORDS)}+{rng.choice(WORDS)}")):
                start = time.perf_counter()
                async with session.get(base + path_) as response:
                    await response.read()
                    assert response.status == 200, (path_, response.status)
                times[name].append((time.perf_counter() - start) * 1000)
    task.cancel()
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        elapsed, _ = fill(path, args.articles)
        size = path.stat().st_size
        per_record = elapsed / args.articles
        fts_row = fts_share(path)
        print(f"filled {args.articles} articles through record_item in {elapsed:.1f} s"
              f" ({per_record * 1000:.2f} ms each; the FTS insert ≈ {fts_row * 1000:.3f} ms"
              f" = {fts_row / per_record:.0%} of it)")
        print(f"database: {size / 1e6:.1f} MB = {size / args.articles * 1000 / 1e6:.2f} MB per 1,000"
              f" articles ({size / args.articles / 1024:.1f} KiB each, index included)")
        times = asyncio.run(time_pages(path, args.articles, args.rounds))
        for name, values in times.items():
            print(f"{name:>9}: p95 {p95(values):6.1f} ms  median {statistics.median(values):6.1f} ms"
                  f"  ({len(values)} requests)")


if __name__ == "__main__":
    main()
