"""Markup the pages build from stored text: every piece of feed or article text is
escaped first and only then wrapped in newsmon's own tags, so hostile content is
text, never markup. Also the server-rendered SVG chart and safe links."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from html import escape
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup

from monitor.storage.search import MARK_END, MARK_START

_SAFE_SCHEMES = ("http", "https")


def safe_url(url: str | None) -> str | None:
    """The URL when it is a plain http(s) link; None for ``javascript:``, ``data:`` and the rest."""
    if not url:
        return None
    cleaned = "".join(url.split())  # "java\tscript:" is javascript: to a browser
    try:
        parts = urlsplit(cleaned)
    except ValueError:
        return None
    return cleaned if parts.scheme.lower() in _SAFE_SCHEMES and parts.netloc else None


def marks(text: str | None) -> Markup:
    """A search highlight (``MARK_START``/``MARK_END``) as escaped HTML with ``<mark>``."""
    safe = escape(text or "", quote=True)
    return Markup(safe.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>"))


def stars(text: str | None) -> Markup:
    """An evidence sentence marked ``**like this**`` (the classifier's form) as HTML."""
    parts = (text or "").split("**")
    out = [escape(p) if i % 2 == 0 else f"<mark>{escape(p)}</mark>" for i, p in enumerate(parts)]
    return Markup("".join(out))


def highlighted_text(text: str, *, terms: Iterable[str], sentences: Iterable[str],
                     paragraphs: bool = True) -> Markup:
    """``text`` as paragraphs (or one line), the matched words in ``<mark>`` and the
    evidence sentences in ``<span class="evidence">``; everything else escaped."""
    parts = [p.strip() for p in re.split(r"\n\s*\n|\n", text) if p.strip()]
    if not paragraphs:
        parts = [" ".join(parts)]
    words = sorted({t for t in terms if t.strip()}, key=len, reverse=True)
    term_re = (re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)",
                          re.IGNORECASE) if words else None)
    wanted = [s.strip() for s in sentences if s and s.strip()]
    html = []
    for paragraph in parts:
        evidence = [False] * len(paragraph)
        for sentence in wanted:
            start = paragraph.find(sentence)
            while start >= 0:
                evidence[start:start + len(sentence)] = [True] * len(sentence)
                start = paragraph.find(sentence, start + len(sentence))
        term = [False] * len(paragraph)
        if term_re is not None:
            for m in term_re.finditer(paragraph):
                term[m.start():m.end()] = [True] * (m.end() - m.start())
        html.append(f"<p>{_runs(paragraph, evidence, term)}</p>" if paragraphs
                    else _runs(paragraph, evidence, term))
    return Markup("\n".join(html))


def _runs(text: str, evidence: Sequence[bool], term: Sequence[bool]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and evidence[j] == evidence[i] and term[j] == term[i]:
            j += 1
        piece = escape(text[i:j])
        if term[i]:
            piece = f"<mark>{piece}</mark>"
        if evidence[i]:
            piece = f'<span class="evidence">{piece}</span>'
        out.append(piece)
        i = j
    return "".join(out)


# --- the volume chart ----------------------------------------------------------------------

SERIES_CLASSES = 8  # colours in app.css: .s0 ... .s7
AXIS_CHAR_WIDTH = 6.5  # px per character of an axis label (11 px system font, generous)


def _tick(x: float, label: str, width: int) -> dict[str, Any]:
    """An x-axis label, anchored so it stays inside the drawing: centred under its day,
    but right-aligned at the right edge and left-aligned at the left (a centred "02 Dec"
    under the last day ran past the viewBox and was clipped)."""
    half = len(label) * AXIS_CHAR_WIDTH / 2
    anchor = "end" if x + half > width - 2 else "start" if x - half < 2 else "middle"
    return {"x": x, "label": label, "anchor": anchor}


def volume_chart(volume: Mapping[str, Mapping[str, int]], *, end: date, days: int = 30,
                 labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An SVG line chart of matches per topic per day: the shapes, for the template to draw."""
    width, height, left, bottom, top = 640, 200, 36, 24, 10
    day_list = [end - timedelta(days=days - 1 - i) for i in range(days)]
    topics = sorted(volume, key=lambda t: -sum(volume[t].values()))
    peak = max([1, *(volume[t].get(d.isoformat(), 0) for t in topics for d in day_list)])
    step = (width - left - 8) / max(1, days - 1)

    def y(value: int) -> float:
        return round(top + (height - top - bottom) * (1 - value / peak), 1)

    series = []
    for n, topic in enumerate(topics):
        points = " ".join(f"{round(left + i * step, 1)},{y(volume[topic].get(d.isoformat(), 0))}"
                          for i, d in enumerate(day_list))
        series.append({"topic": topic, "label": (labels or {}).get(topic, topic),
                       "points": points, "css": f"s{n % SERIES_CLASSES}",
                       "total": sum(volume[topic].get(d.isoformat(), 0) for d in day_list)})
    ticks = [_tick(round(left + i * step, 1), d.strftime("%d %b"), width)
             for i, d in enumerate(day_list) if (days - 1 - i) % 7 == 0]
    grid = [{"y": y(v), "label": str(v)} for v in sorted({0, peak // 2, peak})]
    return {"width": width, "height": height, "left": left, "series": series, "ticks": ticks,
            "grid": grid, "baseline": height - bottom, "days": days}
