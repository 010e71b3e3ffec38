"""Atom 1.0 feeds of alert events (``/feeds/all.atom``, ``/feeds/topic/<id>.atom``).

Pure: rows and URLs in, bytes out. Built with ElementTree, which escapes every
text and attribute; characters XML 1.0 cannot carry at all (``\\x01``–``\\x1f`` but
tab and newlines, lone surrogates, U+FFFE/U+FFFF) are dropped first, so a hostile
title is text in the reader, and the document always parses.

Entry ids are ``tag:`` URIs (RFC 4151) built from the database's instance id and
the story and article ids, so they never change when the workspace moves behind
another host name or port.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote
from xml.etree import ElementTree as ET

from monitor.storage.read_models import AlertEventRow, StoredMatch
from monitor.web.render import safe_url

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml"
TAG_DATE = "2026"  # the tag URIs' date: fixed forever, or every id would change
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_EVIDENCE_CHARS = 300


def xml_text(text: str | None) -> str:
    """``text`` without the characters an XML 1.0 document cannot hold."""
    return _NOT_XML.sub("", text or "")


def stamp(moment: datetime | None) -> str:
    """An RFC 3339 date-time in UTC (Atom's ``updated``)."""
    return (moment or datetime.fromtimestamp(0, UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tag_uri(instance: str, *parts: str) -> str:
    """A stable ``tag:`` id, e.g. ``tag:newsmon,2026:4f1c…/story/12/article/7``."""
    return f"tag:newsmon,{TAG_DATE}:{instance}/" + "/".join(quote(p, safe="") for p in parts)


@dataclass(frozen=True, slots=True)
class FeedLinks:
    """Where the feed and its entries point (absolute URLs; ``key`` is appended to ``self``)."""

    base: str  # e.g. https://newsmon.example.org (no trailing slash)
    self_path: str  # e.g. /feeds/all.atom?key=…
    alternate_path: str  # the page the feed mirrors, e.g. /stories


def why(match: StoredMatch, topic_name: str) -> str:
    """One line on why a topic matched: score against threshold, terms, first evidence."""
    line = f"{topic_name}: score {match.score:g} ≥ threshold {match.threshold:g}"
    if match.terms:
        line += "; terms: " + ", ".join(match.terms[:12])
    if match.evidence:
        text = str(match.evidence[0].get("text", "")).strip()
        if text:
            line += f"; evidence: “{text[:_EVIDENCE_CHARS]}”"
    return line


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        element.text = xml_text(text)
    return element


def build_feed(*, instance: str, feed_key: str, title: str, links: FeedLinks,
               events: Sequence[AlertEventRow], matches: Mapping[int, Sequence[StoredMatch]],
               topic_names: Mapping[str, str], now: datetime) -> bytes:
    """The Atom document of ``events`` (newest first), one entry per alert event."""
    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    _sub(feed, "id", tag_uri(instance, "feed", feed_key))
    _sub(feed, "title", title)
    _sub(feed, "updated", stamp(events[0].alerted_at if events else now))
    _sub(feed, "generator", "newsmon")
    _sub(feed, "link", rel="self", type=ATOM_TYPE, href=links.base + links.self_path)
    _sub(feed, "link", rel="alternate", type="text/html", href=links.base + links.alternate_path)
    author = _sub(feed, "author")
    _sub(author, "name", "newsmon")
    for event in events:
        _entry(feed, instance, links.base, event, matches.get(event.article_id, ()), topic_names)
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body


def _entry(feed: ET.Element, instance: str, base: str, event: AlertEventRow,
           matches: Sequence[StoredMatch], topic_names: Mapping[str, str]) -> None:
    entry = _sub(feed, "entry")
    if event.story_id is not None:
        _sub(entry, "id", tag_uri(instance, "story", event.story_id, "article", str(event.article_id)))
    else:
        _sub(entry, "id", tag_uri(instance, "article", str(event.article_id)))
    label = event.label or event.title or "(untitled)"
    _sub(entry, "title", ("Follow-up: " if event.follow_up else "") + label, type="text")
    _sub(entry, "updated", stamp(event.alerted_at))
    page = (f"{base}/story/{quote(event.story_id, safe='')}" if event.story_id is not None
            else f"{base}/article/{event.article_id}")
    source = safe_url(event.url)
    # The source first: a reader opens the "alternate" link; the workspace page is "related".
    if source:
        _sub(entry, "link", rel="alternate", type="text/html", href=source)
        _sub(entry, "link", rel="related", type="text/html", href=page, title="newsmon")
    else:
        _sub(entry, "link", rel="alternate", type="text/html", href=page)
    for topic in event.topics:
        _sub(entry, "category", term=topic, label=topic_names.get(topic, topic))
    lines = [why(m, topic_names.get(m.topic, m.topic)) for m in matches if m.topic in event.topics]
    _sub(entry, "summary", "\n".join(lines) or "alerted", type="text")
    _sub(entry, "content", _content_html(event, lines, source, page), type="html")


def _content_html(event: AlertEventRow, lines: Sequence[str], source: str | None, page: str) -> str:
    """The entry as HTML made of escaped pieces only (the XML writer escapes it once more)."""
    parts = []
    if event.label and event.title and event.label != event.title:
        parts.append(f"<p>Article: {escape(event.title)}</p>")
    if lines:
        parts.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>")
    links = [f'<a href="{escape(page)}">{"the story" if event.story_id else "the article"} in newsmon</a>']
    if source:
        links.insert(0, f'<a href="{escape(source)}">the source</a>')
    parts.append("<p>" + " · ".join(links) + "</p>")
    return "".join(parts)
