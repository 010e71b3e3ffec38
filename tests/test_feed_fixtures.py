"""The 38 real feeds of ../shared/fixtures/feeds, served on 127.0.0.1.

Every file goes through the whole fetch + parse path (real loopback server,
real Fetcher, storage): it yields its items (the count of index.tsv, titles in
the right encoding, links and dates) or a clear per-feed "not a feed" error.
Then one ``newsmon once`` subprocess polls all of them and must not crash.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.configs import ConfigFactory
from tests.helpers.feed import build, pipeline_config, rows, run
from tests.helpers.paths import REPO, shared_path
from tests.helpers.servers import Site

# Files that are not RSS/Atom at all (or intentionally broken): a clear error, no items.
NOT_FEEDS = {
    "reuters_mostread_invalid__feed-rs.xml",  # truncated XML, invalid per feed-rs's own tests
    "slashdot_backslash__chrome-extension.xml",  # Slashdot "backslash" XML, not RSS
    "lavanguardia_newsml__chrome-extension.xml",  # NewsML, not RSS
}

# A title from each feed with a non-trivial encoding, exactly as it must come out.
TITLES = {
    "uol_noticias_br__rss-parser.rss":  # undeclared ISO-8859-1, not well-formed
        "Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno",
    "jornal_de_noticias_pt__rss-parser.rss": "Mãe de utente é a nova presidente da Raríssimas",
    "oren_ru_windows1251__node-feedparser.xml":
        "В Бузулуке главные стройплощадки – детсад и Ледовый дворец",
    "compressed_gzip__node-feedparser.xml.gz":  # gzip bytes without Content-Encoding
        "В Бузулуке главные стройплощадки – детсад и Ледовый дворец",
    "qq_news_gb2312__rss-parser.xml": "拟298亿元重组盛大游戏后 世纪华通发20亿回购预案",
    "golem_de_rdf_iso8859__feed-rs.rdf":
        "Digitalministerium: Neue Glasfaserförderung mit Schnellkasse",
    "inovacao_tecnologica_br_iso8859__feed-rs.xml":
        "Revolução nas telas com pontos quânticos impressos em 3D",
    "heise_developer_de__rss-parser.atom": "Java-Anwendungsserver: Red Hat gibt WildFly 10 frei",
    "unian_ua_ukrainian_2020__data-import.xml":
        '"Зір вдалося зберегти": у Дніпрі лікарі рятують сапера, який підірвався на Донбасі',
    "liga_net_russian_2021__whats_about_bot.xml":
        'Футбол. "Арсенал" – "Челси": где и когда смотреть матч английской Премьер-лиги',
    "europapress_es__chrome-extension.xml":  # undefined entity: recovered
        "MOCKS - Extremadura limita la circulación de personas entre las 00.00 y las 06.00"
        " para frenar el Covid-19",
    "science_twis_rdf__rss-parser.rdf": "Food for fungi",
}
VERSIONS = {
    "science_twis_rdf__rss-parser.rdf": "rss10", "golem_de_rdf_iso8859__feed-rs.rdf": "rss10",
    "heise_developer_de__rss-parser.atom": "atom10",
    "talkingpointsmemo_all__node-feedparser.atom": "atom10",
    "elconfidencial_es_atom__chrome-extension.atom": "atom10",
    "guardian_us__rss-parser.rss": "rss20",
}
# Items a feed lists twice (same guid, same title and text): stored once.
REPEATS = {"bbc_news_frontpage_2024-08__web-services-ae2.xml": 1}
MOJIBAKE = ("\ufffd", "Ã©", "Ã£", "Ã§", "Ð¾", "Ñ\x80", "â€")


def fixtures() -> tuple[Path, list[dict[str, str]]]:
    folder = shared_path("fixtures", "feeds")
    with (folder / "index.tsv").open(encoding="utf-8") as handle:
        return folder, list(csv.DictReader(handle, delimiter="\t"))


def content_type(name: str) -> str:
    if name.endswith(".atom"):
        return "application/atom+xml"
    if name.endswith(".rdf"):
        return "application/rdf+xml"
    if name.endswith(".gz"):
        return "application/xml"  # and no Content-Encoding: the bytes are gzip
    return "application/rss+xml"


@pytest.fixture(scope="module")
def feed_site() -> Any:
    folder, index = fixtures()
    site = Site()
    for row in index:
        site.routes[f"/{row['file']}"] = (200, {"Content-Type": content_type(row["file"])},
                                          (folder / row["file"]).read_bytes())
    site.start()
    yield site, index
    site.stop()


def test_every_fixture_feed_yields_its_items_or_a_clear_error(
        tmp_path: Path, feed_site: Any) -> None:
    site, index = feed_site
    assert len(index) == 38
    urls = {row["file"]: site.url(f"/{row['file']}") for row in index}
    config = pipeline_config(tmp_path, list(urls.values()), max_items_per_poll=500)
    pipeline = build(config)
    report = run(pipeline, pipeline.run_cycle())
    by_file = {o.url.rsplit("/", 1)[1]: o for o in report.outcomes}
    assert set(by_file) == set(urls)
    for row in index:
        name, outcome = row["file"], by_file[row["file"]]
        if name in NOT_FEEDS:
            assert not outcome.ok and outcome.error_kind == "not_a_feed", name
            assert "not a feed" in (outcome.error or "") and name in (outcome.error or "")
            continue
        assert outcome.ok, (name, outcome.error)
        assert outcome.items == int(row["item_count"]), name
        # No guid collapses real items; only true repeats inside a feed are merged.
        assert outcome.new_items == outcome.items - REPEATS.get(name, 0), name
    for name, title in TITLES.items():
        stored = [r[0] for r in rows(config, "SELECT i.title FROM items i JOIN feeds f ON"
                                             " f.id = i.feed_id WHERE f.url = ?", urls[name])]
        assert title in stored, (name, stored[:3])
    for (title, link, url) in rows(config, "SELECT i.title, i.link, f.url FROM items i"
                                           " JOIN feeds f ON f.id = i.feed_id"):
        assert title and "\n" not in title
        assert not any(m in title for m in MOJIBAKE), title
        assert link is None or link.startswith(("http://", "https://")), link
        if "talkingpointsmemo" not in url:  # TPM's links really are relative: resolved
            assert link is None or "127.0.0.1" not in link  # nothing invented from guids
    dated = rows(config, "SELECT COUNT(*) FROM items WHERE published IS NOT NULL")[0][0]
    total = rows(config, "SELECT COUNT(*) FROM items")[0][0]
    assert total == sum(int(r["item_count"]) - REPEATS.get(r["file"], 0)
                        for r in index if r["file"] not in NOT_FEEDS)
    assert dated >= 0.9 * total


def test_formats_are_recognised(tmp_path: Path, feed_site: Any) -> None:
    site, _ = feed_site
    from monitor.ingest.parse import parse_feed

    folder, _ = fixtures()
    for name, version in VERSIONS.items():
        parsed = parse_feed((folder / name).read_bytes(), url=site.url(f"/{name}"))
        assert parsed.version == version, name


@pytest.mark.timeout(240)
def test_newsmon_once_survives_all_38_feeds(tmp_path: Path, make_config: ConfigFactory,
                                            feed_site: Any) -> None:
    site, index = feed_site
    config = make_config.write(
        database="state/fixtures.db", feeds=[site.url("/" + row["file"]) for row in index],
        # Article pages would be on real hosts: not fetched. Few items each: it is a crash test.
        fetch={"timeout": "20s", "fetch_articles": False, "max_items_per_poll": 3},
        analysis={"workers": 1})
    done = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "once"],
                          cwd=REPO, capture_output=True, text=True, timeout=220,
                          env={**os.environ})
    assert done.returncode == 1, done.stderr[-3000:]  # three feeds are not feeds
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "38 feeds polled (3 failed)" in done.stdout
    for name in NOT_FEEDS:
        assert f"{name}: not_a_feed" in done.stderr
    db = sqlite3.connect(tmp_path / "state" / "fixtures.db")
    expected = sum(min(3, int(r["item_count"])) for r in index if r["file"] not in NOT_FEEDS)
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == expected
