"""The extract stage: real pages, the summary fallback, hostile pages (section D)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import sys
import time
from collections import Counter

import pytest

from monitor.analysis.extract import (
    MAX_HTML_BYTES,
    MAX_TAGS,
    bounded,
    build_article,
    extract_page,
    page_language,
)
from monitor.models import ArticleInput, FeedItem
from tests.helpers.paths import REPO, SEED, shared_path
from tests.helpers.servers import article_html


def item(summary: str = "A short summary from the feed.", link: str | None = "https://x.example/a"):
    return FeedItem(guid="g1", link=link, canonical_url=link, title="Feed title", summary=summary,
                    published=None)


def word_f1(predicted: str, truth: str) -> float:
    p, t = predicted.split(), truth.split()
    common = sum((Counter(p) & Counter(t)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


def test_seed_page_is_extracted_without_boilerplate() -> None:
    paragraphs = SEED.read_text(encoding="utf-8").split("\n")
    page = extract_page(article_html("Seed", paragraphs), "https://x.example/seed")
    assert page is not None
    assert "no grounds for negotiations yet" in page.text
    assert "$680 million" in page.text
    assert "Copyright Test News" not in page.text  # the footer is not article text
    assert page.language == "en"
    assert page.title == "Seed"


def test_real_pages_match_their_ground_truth() -> None:
    """Body F1 over a sample of the extraction benchmark stays near trafilatura's 0.95."""
    html_dir = shared_path("fixtures", "html")
    truth = json.loads((html_dir / "ground-truth.json").read_text(encoding="utf-8"))
    files = sorted((html_dir / "html").glob("*.html.gz"))[::6]  # 31 pages, every 6th
    scores = []
    for path in files:
        page = extract_page(gzip.decompress(path.read_bytes()), truth[path.name[:64]]["url"])
        scores.append(word_f1(page.text if page else "", truth[path.name[:64]]["articleBody"]))
    assert len(scores) >= 30
    assert sum(scores) / len(scores) >= 0.90


def test_page_text_is_used_when_the_page_has_an_article() -> None:
    html = article_html("Title", ["A sentence of the article body that is long enough. " * 10])
    article, error = build_article(ArticleInput(item=item(), feed_url="f", html=html))
    assert article.text_source == "page"
    assert "article body" in article.body
    assert article.summary == "A short summary from the feed."
    assert error is None


def test_summary_is_the_fallback_when_the_page_could_not_be_had() -> None:
    source = ArticleInput(item=item(), feed_url="f", html=None, page_error="timeout: too slow")
    article, error = build_article(source)
    assert article.text_source == "summary"
    assert article.body == ""
    assert error == "timeout: too slow"


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00\x01\x02\xff\xfe" * 2000,  # binary junk
        b"<html>" + bytes(range(256)) * 100,  # an html prefix, then junk
        pytest.param(None, id="gzip-bomb"),  # built in the test: 200 MB of zeros, gzipped
        b"",
    ],
)
def test_junk_yields_no_text_and_falls_back(junk: bytes | None) -> None:
    if junk is None:
        import zlib

        packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
        chunk = bytes(1024 * 1024)
        junk = b"".join(packer.compress(chunk) for _ in range(200)) + packer.flush()
    started = time.monotonic()
    article, error = build_article(ArticleInput(item=item(), feed_url="f", html=junk))
    assert time.monotonic() - started < 5
    assert article.text_source == "summary"
    if junk:
        assert error  # the reason is recorded


def test_deep_nesting_loses_text_and_falls_back_to_the_summary() -> None:
    """libxml2 stops near depth 255, so deep content is dropped: use the summary."""
    html = (b"<html><body>" + b"<div>" * 10_000 + b"<p>ceasefire talk deep inside</p>"
            + b"</div>" * 10_000 + b"</body></html>")
    article, _ = build_article(ArticleInput(item=item(summary="Ceasefire summary."), feed_url="f",
                                            html=html))
    assert "ceasefire" in (article.body + article.summary).lower()


def test_too_short_page_text_falls_back_to_a_longer_summary() -> None:
    long_summary = "The summary carries the story. " * 20
    html = article_html("Title", ["Subscribe to read."])
    article, error = build_article(ArticleInput(item=item(summary=long_summary), feed_url="f",
                                                html=html))
    assert article.text_source == "summary"
    assert "too short" in (error or "")


def test_huge_page_is_capped_before_extraction() -> None:
    """A 50 MB page would cost trafilatura 36 s and 1.3 GB: only the cap is read."""
    code = (
        "import resource, time\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))\n"
        "from monitor.analysis.extract import extract_page\n"
        "html = b'<html><body><article>' + b'<p>word word word word</p>' * 2_000_000 + b'</article>'\n"
        "started = time.monotonic()\n"
        "page = extract_page(html)\n"
        "print(round(time.monotonic() - started, 1), len(page.text) if page else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    seconds, length = result.stdout.split()
    assert float(seconds) < 10
    assert int(length) < MAX_HTML_BYTES  # text came from the capped prefix only


def test_tag_cap_keeps_the_start_of_the_page() -> None:
    html = b"<p>a</p>" * (MAX_TAGS * 2)
    cut = bounded(html)
    assert cut.count(b"<") == MAX_TAGS - 1
    assert html.startswith(cut)
    real = article_html("t", ["x"])
    assert bounded(real) == real


def test_page_language_reads_the_html_lang_attribute() -> None:
    assert page_language(b'<html lang="uk"><body></body></html>') == "uk"
    assert page_language(b"<html><body></body></html>") is None
    assert page_language(b'<html class="no-js" lang="en-GB"><body></body></html>') == "en"
    assert page_language(b"<html xml:lang='pt_BR'><body></body></html>") == "pt"
    assert page_language(b'<html data-lang="de"><body></body></html>') is None
    assert page_language(b'<html lang="x-default"><body></body></html>') is None


def _page(lang: str) -> bytes:
    return article_html("Title", [f"Paragraph {n} of a story long enough to be kept." * 3
                                  for n in range(5)]).replace(b"lang='en'", f"lang='{lang}'".encode())


def test_article_language_is_the_pages_html_lang_as_a_primary_subtag() -> None:
    article, _ = build_article(ArticleInput(item=item(), feed_url="f", html=_page("en-GB")))
    assert article.text_source == "page"
    assert article.language == "en"
    # The page's language wins over the feed's: it is the text that is judged.
    feed_says = dataclasses.replace(item(), language="de-AT")
    # (pt: a tag detection cannot judge; an English text on a uk page would be put right)
    article, _ = build_article(ArticleInput(item=feed_says, feed_url="f", html=_page("pt-BR")))
    assert article.language == "pt"


def test_article_language_falls_back_to_the_feeds() -> None:
    feed_says = dataclasses.replace(item(), language="de-AT")
    article, _ = build_article(ArticleInput(item=feed_says, feed_url="f"))  # no page
    assert (article.text_source, article.language) == ("summary", "de")
    no_lang = article_html("T", ["Long enough paragraph of story text." * 10]).replace(
        b" lang='en'", b"")
    article, _ = build_article(ArticleInput(item=feed_says, feed_url="f", html=no_lang))
    assert (article.text_source, article.language) == ("page", "de")
    # An unused page (a short consent wall) does not say what the summary's language is...
    wall = article_html("T", ["Accept cookies."]).replace(b"lang='en'", b"lang='fr'")
    article, _ = build_article(ArticleInput(item=feed_says, feed_url="f", html=wall))
    assert (article.text_source, article.language) == ("summary", "de")
    # ...but it is better than nothing when the feed says nothing.
    article, _ = build_article(ArticleInput(item=item(), feed_url="f", html=wall))
    assert (article.text_source, article.language) == ("summary", "fr")
    article, _ = build_article(ArticleInput(item=item(), feed_url="f"))
    assert article.language == "en"  # no one says: detected from the text (analysis/detect.py)


RSS = """<?xml version="1.0"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>t</title>
<link>https://x.example/</link><language>en-GB</language>
<item><title>Channel language</title><link>https://x.example/1</link><description>s</description></item>
<item><title>Own language</title><link>https://x.example/2</link><description>s</description>
<dc:language>ru-RU</dc:language></item>
</channel></rss>"""
RDF = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://x.example/"><title>t</title><link>https://x.example/</link>
<dc:language>fr-FR</dc:language></channel>
<item rdf:about="https://x.example/1"><title>a</title><link>https://x.example/1</link></item>
</rdf:RDF>"""
ATOM = """<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="uk-UA"><title>t</title><id>urn:f</id>
<entry><title>Feed language</title><id>urn:1</id><link href="https://x.example/1"/></entry>
<entry xml:lang="ru"><title>Own language</title><id>urn:2</id><link href="https://x.example/2"/></entry>
</feed>"""
JSON_FEED = json.dumps({
    "version": "https://jsonfeed.org/version/1.1", "title": "t", "language": "de-DE",
    "items": [{"id": "1", "url": "https://x.example/1", "title": "Feed language"},
              {"id": "2", "url": "https://x.example/2", "title": "Own", "language": "en-US"},
              {"id": "3", "url": "https://x.example/3", "title": "Odd", "language": 7}],
})


@pytest.mark.parametrize(("content", "languages"), [
    (RSS, ["en", "ru"]), (RDF, ["fr"]), (ATOM, ["uk", "ru"]), (JSON_FEED, ["de", "en", "de"]),
], ids=["rss", "rdf", "atom", "json"])
def test_article_language_from_the_feed(content: str, languages: list[str]) -> None:
    """The item's own language (dc:language, xml:lang), else the feed's, reaches the article."""
    from monitor.ingest.parse import parse_feed

    feed = parse_feed(content.encode(), url="https://x.example/feed")
    articles = [build_article(ArticleInput(item=i, feed_url="f"))[0] for i in feed.items]
    assert [a.language for a in articles] == languages
