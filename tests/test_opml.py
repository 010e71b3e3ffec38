"""OPML import/export (monitor/ingest/opml.py) and ``newsmon feeds import/export``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor.cli.app import cli
from monitor.config import FeedConfig, load_config
from monitor.ingest.opml import OpmlError, export_opml, parse_opml
from tests.helpers.servers import Site, rss

OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>My feeds</title></head><body>
  <outline text="News" title="News">
    <outline type="rss" text="Wire" xmlUrl="https://wire.example/rss.xml" htmlUrl="https://wire.example/"/>
    <outline text="Europe">
      <outline type="rss" text="EU desk" xmlurl="https://eu.example/feed" category="/politics,/eu"/>
    </outline>
  </outline>
  <outline type="rss" text="Dup" xmlUrl="https://wire.example/rss.xml"/>
  <outline type="rss" text="Local file" xmlUrl="file:///etc/passwd"/>
  <outline type="rss" text="Top level" xmlUrl="http://top.example/atom"/>
</body></opml>"""

CONFIG = """\
# Main config: keep this comment
database: state/test.db   # relative to this file

feeds:
  # Wire services
  - {url: "https://wire.example/rss.xml", name: Wire, tags: [wire]}

rules: []
fetch:
  allow_networks: ['127.0.0.0/8']
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "newsmon.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    path.chmod(0o640)
    return path


def test_parse_opml_folders_categories_duplicates_and_bad_urls() -> None:
    result = parse_opml(OPML)
    assert [(f.url, f.title, f.tags) for f in result.feeds] == [
        ("https://wire.example/rss.xml", "Wire", ("News",)),
        ("https://eu.example/feed", "EU desk", ("News", "Europe", "politics", "eu")),
        ("http://top.example/atom", "Top level", ()),
    ]
    assert len(result.skipped) == 1 and "file:///etc/passwd" in result.skipped[0]


@pytest.mark.parametrize("data,message", [
    (b"not xml at all <", "not XML"),
    (b"<rss version='2.0'/>", "no <opml> root"),
    (b"<opml version='2.0'><head/></opml>", "no <body>"),
    (b'<!DOCTYPE opml [<!ENTITY x "y">]><opml><body/></opml>', "entities"),
])
def test_bad_opml_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(OpmlError, match=message):
        parse_opml(data)


def test_export_then_import_round_trips() -> None:
    feeds = [FeedConfig(url="https://a.example/f", name="A & B <news>", tags=("x", "y")),
             FeedConfig(url="http://b.example/rss?x=1&y=2")]
    data = export_opml(feeds)
    assert data.startswith(b"<?xml") and b'version="2.0"' in data
    back = parse_opml(data).feeds
    assert [(f.url, f.title, f.tags) for f in back] == [
        ("https://a.example/f", "A & B <news>", ("x", "y")),
        # A feed without a name is titled by its URL with the query masked (it may hold a
        # token); xmlUrl keeps the whole URL, so the feed itself round-trips.
        ("http://b.example/rss?x=1&y=2", "http://b.example/rss?…", ())]


def test_import_appends_keeps_comments_and_skips_known_feeds(tmp_path: Path,
                                                             config_file: Path) -> None:
    opml = tmp_path / "list.opml"
    opml.write_bytes(OPML)
    result = invoke("--config", str(config_file), "feeds", "import", str(opml), "--tag", "imp")
    assert result.exit_code == 0, result.output
    text = config_file.read_text(encoding="utf-8")
    assert text.startswith(CONFIG.split("\n\nrules")[0])  # everything before is untouched
    assert "# Main config: keep this comment" in text and "# relative to this file" in text
    assert '{url: https://eu.example/feed, name: EU desk, tags: [News, Europe, politics, eu, imp]}' \
        in text
    config = load_config(config_file)
    assert [f.url for f in config.feeds] == ["https://wire.example/rss.xml",
                                             "https://eu.example/feed", "http://top.example/atom"]
    assert config_file.stat().st_mode & 0o777 == 0o640
    assert "2 added, 1 already configured, 0 rejected" in result.output
    again = invoke("--config", str(config_file), "feeds", "import", str(opml))
    assert again.exit_code == 0 and "0 added, 3 already configured" in again.output


def test_import_dry_run_writes_nothing(tmp_path: Path, config_file: Path) -> None:
    opml = tmp_path / "list.opml"
    opml.write_bytes(OPML)
    result = invoke("--config", str(config_file), "feeds", "import", str(opml), "--dry-run")
    assert result.exit_code == 0
    assert "would add\thttps://eu.example/feed" in result.output
    assert config_file.read_text(encoding="utf-8") == CONFIG


def test_import_errors_have_trustworthy_exit_codes(tmp_path: Path, config_file: Path) -> None:
    missing = invoke("--config", str(config_file), "feeds", "import", str(tmp_path / "no.opml"))
    assert missing.exit_code == 2
    bad = tmp_path / "bad.opml"
    bad.write_bytes(b"<html>nope</html>")
    result = invoke("--config", str(config_file), "feeds", "import", str(bad))
    assert result.exit_code == 2 and "not an OPML document" in result.output
    empty = tmp_path / "empty.opml"
    empty.write_bytes(b"<opml version='2.0'><body/></opml>")
    assert invoke("--config", str(config_file), "feeds", "import", str(empty)).exit_code == 1
    assert config_file.read_text(encoding="utf-8") == CONFIG


def test_an_import_that_would_break_the_config_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "newsmon.yaml"
    # Valid now; an imported entry with a non-string tag makes the result invalid.
    path.write_text("feeds:\n  - url: https://a.example/f\n    interval: 10m\nrules: []\n"
                    "fetch:\n  max_interval: 1m\n  min_interval: 1m\n", encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    from monitor.ingest import opml as opml_module
    from monitor.ingest.opml import OpmlFeed
    from monitor.yamlfile import ConfigErrors

    with pytest.raises(ConfigErrors):
        opml_module.append_feeds(path, [OpmlFeed(url="https://b.example/f")],
                                 extra_tags=("bad tag", 5))  # type: ignore[arg-type]
    assert path.read_text(encoding="utf-8") == before
    assert not list(tmp_path.glob(".newsmon-import-*"))


def test_import_with_check_rejects_dead_feeds_and_reports_plainly_when_piped(
        tmp_path: Path, config_file: Path, site: Site) -> None:
    site.routes["/good.xml"] = (200, {"Content-Type": "application/rss+xml"},
                                rss([{"title": "x", "guid": "1"}], title="Good feed"))
    site.routes["/html"] = (200, {"Content-Type": "text/html"}, b"<html>login</html>")
    opml = tmp_path / "list.opml"
    opml.write_bytes(export_opml([FeedConfig(url=site.url("/good.xml")),
                                  FeedConfig(url=site.url("/html")),
                                  FeedConfig(url=site.url("/missing"))]).replace(
        f'text="{site.url("/good.xml")}"'.encode(), b'text=""').replace(
        f'title="{site.url("/good.xml")}"'.encode(), b'title=""'))
    result = invoke("--config", str(config_file), "feeds", "import", str(opml), "--check")
    assert result.exit_code == 1, result.output
    assert f"ok\t{site.url('/good.xml')}" in result.output
    assert f"rejected\t{site.url('/html')}\tnot_a_feed" in result.output
    assert f"rejected\t{site.url('/missing')}\thttp_status" in result.output
    config = load_config(config_file)
    added = [f for f in config.feeds if f.url == site.url("/good.xml")]
    assert len(added) == 1 and added[0].name == "Good feed"  # the title, from the check
    assert len(config.feeds) == 2


def test_import_from_a_url_serving_opml_or_a_site(config_file: Path, site: Site) -> None:
    site.routes["/list.opml"] = (200, {"Content-Type": "text/x-opml"}, OPML)
    site.routes["/"] = (200, {"Content-Type": "text/html"},
                        b'<html><head><link rel="alternate" type="application/atom+xml"'
                        b' title="Site atom" href="/atom.xml"></head><body>hi</body></html>')
    result = invoke("--config", str(config_file), "feeds", "import", site.url("/list.opml"))
    assert result.exit_code == 0, result.output
    result = invoke("--config", str(config_file), "feeds", "import", site.url("/"))
    assert result.exit_code == 0, result.output
    urls = [f.url for f in load_config(config_file).feeds]
    assert urls[-1] == site.url("/atom.xml") and "https://eu.example/feed" in urls


def test_export_command(tmp_path: Path, config_file: Path) -> None:
    result = invoke("--config", str(config_file), "feeds", "export")
    assert result.exit_code == 0
    assert parse_opml(result.output.encode()).feeds[0].url == "https://wire.example/rss.xml"
    out = tmp_path / "out.opml"
    assert invoke("--config", str(config_file), "feeds", "export", "-o", str(out)).exit_code == 0
    assert parse_opml(out.read_bytes()).feeds[0].tags == ("wire",)
