"""OPML 2.0 feed lists: read them, write them, and append feeds to the config file.

Import appends to the config file itself (``feeds:``), edited with ruamel.yaml's
round-trip mode so comments, key order and the style of the existing entries
are kept. The new file is validated with the real config loader before it
replaces the old one (atomically, same permissions); if it would not load,
nothing is written. A separate included file was not chosen: the config has
no include mechanism, and one file is what ``newsmon check`` and operators read.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from lxml import etree
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from monitor.config import _VAR, FeedConfig, _http_url, load_config
from monitor.errors import OpmlError as OpmlError

MAX_OPML_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    url: str
    title: str | None = None
    tags: tuple[str, ...] = ()
    html_url: str | None = None


@dataclass
class OpmlResult:
    feeds: list[OpmlFeed] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # outlines with a bad or no URL


def _parser() -> etree.XMLParser:
    # No DTD, no entities, no network: an OPML file from the internet is untrusted.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, remove_comments=True)


def looks_like_opml(data: bytes) -> bool:
    return b"<opml" in data[:4096].lower()


def parse_opml(data: bytes) -> OpmlResult:
    """Feeds listed in an OPML document (any outline with an ``xmlUrl``).

    Folder outlines (no ``xmlUrl``) become tags of the feeds inside them, as do
    OPML 2.0 ``category`` attributes. Duplicated URLs are listed once.
    """
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(f"the OPML file is over {MAX_OPML_BYTES // (1024 * 1024)} MB")
    if b"<!ENTITY" in data[:65536]:
        raise OpmlError("the OPML file declares XML entities (refused)")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise OpmlError(f"not XML: {exc}") from None
    if root is None or etree.QName(root).localname.lower() != "opml":
        raise OpmlError("not an OPML document (no <opml> root element)")
    body = next((c for c in root if isinstance(c.tag, str)
                 and etree.QName(c).localname.lower() == "body"), None)
    if body is None:
        raise OpmlError("not an OPML document (no <body>)")
    result = OpmlResult()
    seen: set[str] = set()
    _walk(body, (), result, seen)
    return result


def _attr(element: etree._Element, name: str) -> str | None:
    """An attribute, matched case-insensitively (``xmlUrl``, ``xmlurl``, ``XMLURL``)."""
    for key, value in element.attrib.items():
        if str(key).lower() == name.lower():
            return str(value).strip() or None
    return None


def _walk(parent: etree._Element, tags: tuple[str, ...], result: OpmlResult,
          seen: set[str]) -> None:
    for outline in parent:
        if not isinstance(outline.tag, str) or etree.QName(outline).localname != "outline":
            continue
        url = _attr(outline, "xmlUrl")
        label = _attr(outline, "title") or _attr(outline, "text")
        if url is None:
            # A folder: its name tags the feeds inside it.
            _walk(outline, (*tags, label) if label else tags, result, seen)
            continue
        try:
            _http_url(url)
        except ValueError:
            result.skipped.append(f"{url!r}: not an http(s) URL")
            continue
        if url in seen:
            continue
        seen.add(url)
        categories = tuple(
            part.strip("/ ").split("/")[-1] for part in (_attr(outline, "category") or "").split(",")
            if part.strip("/ ")
        )
        result.feeds.append(OpmlFeed(url=url, title=label,
                                     tags=tuple(dict.fromkeys((*tags, *categories))),
                                     html_url=_attr(outline, "htmlUrl")))


def export_opml(feeds: Iterable[FeedConfig], *, title: str = "newsmon feeds",
                now: datetime | None = None) -> bytes:
    """An OPML 2.0 document listing ``feeds`` (tags as the ``category`` attribute)."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateCreated").text = format_datetime(now or datetime.now(UTC),
                                                                 usegmt=True)
    body = etree.SubElement(root, "body")
    for feed in feeds:
        attrs = {"type": "rss", "text": feed.label, "title": feed.label, "xmlUrl": feed.url}
        if feed.tags:
            attrs["category"] = ",".join(feed.tags)
        etree.SubElement(body, "outline", attrs)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# --- appending to the config file ---------------------------------------------------


def _round_trip_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the user wrote on one line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _new_entry(feed: OpmlFeed, flow: bool, extra_tags: Sequence[str]) -> CommentedMap:
    entry = CommentedMap()
    entry["url"] = feed.url
    if feed.title:
        entry["name"] = feed.title
    tags = list(dict.fromkeys((*feed.tags, *extra_tags)))
    if tags:
        seq = CommentedSeq(tags)
        seq.fa.set_flow_style()
        entry["tags"] = seq
    if flow:
        entry.fa.set_flow_style()
    return entry


@dataclass
class AppendResult:
    added: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


def append_feeds(config_path: Path, feeds: Sequence[OpmlFeed], *, extra_tags: Sequence[str] = (),
                 dry_run: bool = False) -> AppendResult:
    """Append ``feeds`` not yet configured to the config file's ``feeds:`` list.

    Raises ConfigErrors (and writes nothing) when the result would not load.
    """
    yaml = _round_trip_yaml()
    text = config_path.read_text(encoding="utf-8")
    data = yaml.load(text)
    if data is None:
        data = CommentedMap()
    existing = data.get("feeds")
    if existing is None:
        existing = CommentedSeq()
        data["feeds"] = existing
    known = {str(e.get("url")) for e in existing if isinstance(e, dict)}
    # New entries follow the style of the existing ones (flow "{url: ...}" or block).
    flow = bool(existing) and all(
        isinstance(e, CommentedMap) and e.fa.flow_style() for e in existing)
    result = AppendResult()
    for feed in feeds:
        if feed.url in known:
            result.already.append(feed.url)
            continue
        known.add(feed.url)
        existing.append(_new_entry(feed, flow, extra_tags))
        result.added.append(feed.url)
    if dry_run or not result.added:
        return result
    out = io.StringIO()
    yaml.dump(data, out)
    _replace_validated(config_path, out.getvalue())
    return result


def _replace_validated(config_path: Path, text: str) -> None:
    """Write ``text`` beside the config, load it as a config, then swap it in."""
    folder = config_path.resolve().parent
    fd, tmp_name = tempfile.mkstemp(prefix=".newsmon-import-", suffix=".yaml", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, config_path.stat().st_mode & 0o7777)
        # Secrets need not be in this shell's environment to check the structure.
        environ = {**{name: "placeholder" for name in _VAR.findall(text)}, **os.environ}
        load_config(tmp, environ=environ)  # raises ConfigErrors: the old file stays
        os.replace(tmp, config_path)
    finally:
        tmp.unlink(missing_ok=True)
