"""Judging one topic over one article's term occurrences: score, conditions, evidence.

Scoring (EMM-style): each occurrence of a scoring term adds
``term weight × group weights × field weight`` (title, summary, lede, body);
a topic fires when the score reaches its threshold, enough distinct terms
occurred, every ``require`` condition holds, no ``exclude`` condition holds and
the article is in the topic's scope. :class:`TopicEvaluator` walks the
condition tree; its conclusion, :class:`TopicExplanation`, and the wording an
analyst reads in five seconds live in ``monitor.rules.explanation``.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from monitor.analysis.analyser import AnalysedArticle
from monitor.models import Article, EvidenceSentence, TermHit
from monitor.rules.compiled import Node, Topic
from monitor.rules.explanation import (
    TopicExplanation,
    mark,
    shown_term,
    why_words,
)
from monitor.rules.features import RuleOutcome
from monitor.rules.matching import Occurrence

log = logging.getLogger(__name__)

MAX_EVIDENCE = 3
_FIELD_ORDER = {"title": 0, "summary": 1, "lede": 2, "body": 3}


@dataclass(frozen=True, slots=True)
class _Hit:
    occ: Occurrence
    term: str
    weight: float  # 0 for proximity partners: marked as evidence, not scored
    src: int = 0  # id() of the node that scored it: the same span scores once per node


@dataclass(frozen=True, slots=True)
class _Result:
    ok: bool
    hits: tuple[_Hit, ...] = ()


_FAIL = _Result(False)
_EMPTY_OK = _Result(True)  # a leaf with min_count 0 and nothing found
_Ctx = tuple[frozenset[str] | None, tuple[tuple[Node, int | None], ...]]
_NO_CTX: _Ctx = (None, ())


class TreeMemo:
    """Per rule set: which leaves each group needs, memoised by node identity (the
    classifier holding it holds the rule set, so a node's id is never reused)."""

    def __init__(self) -> None:
        self._needs: dict[int, frozenset[int] | None] = {}
        self._under: dict[int, frozenset[int]] = {}
        self._loose: dict[int, Node] = {}

    def loose(self, node: Node) -> Node:
        """``node`` anywhere and once (no fields, counts of 1): what it holds before
        "where" and "how many", for the shortfall's words. Made once and kept, so its
        id, a key of this memo, is never reused."""
        got = self._loose.get(id(node))
        if got is None:
            got = self._loose[id(node)] = replace(node, fields=None, min_count=1, min_sentences=1)
        return got

    def needs_a_leaf(self, node: Node) -> frozenset[int] | None:
        """The leaves one of which must occur for ``node`` to hold, or None when it
        can hold without any (a ``none`` or a ``min_count: 0`` inside)."""
        key = id(node)
        if key in self._needs:
            return self._needs[key]
        leaves: set[int] | None = set()
        stack, seen = [node], set()
        while stack and leaves is not None:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.kind == "none" or n.min_count <= 0:
                leaves = None
            elif n.kind == "leaf":
                leaves.add(n.leaf)
            else:
                stack.extend(n.children)
        result = self._needs[key] = frozenset(leaves) if leaves is not None else None
        return result

    def leaves_under(self, node: Node) -> frozenset[int]:
        """Every leaf in ``node``'s tree."""
        key = id(node)
        got = self._under.get(key)
        if got is None:
            leaves: set[int] = set()
            stack, seen = [node], set()
            while stack:
                n = stack.pop()
                if id(n) not in seen:
                    seen.add(id(n))
                    if n.kind == "leaf":
                        leaves.add(n.leaf)
                    stack.extend(n.children)
            got = self._under[key] = frozenset(leaves)
        return got


def _normal_line(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(" .:;!?-–—")


def headline_copies(analysed: AnalysedArticle) -> frozenset[int]:
    """The body's first sentences that repeat the headline word for word."""
    title, body = analysed.field("title"), analysed.field("body")
    if title is None or body is None:
        return frozenset()
    head = _normal_line(title.text)
    if len(head) < 12:
        return frozenset()
    copies = set()
    for i in range(min(2, len(body.sent_starts))):
        s, e = body.sentence_span(i)
        if _normal_line(body.text[s:e]) == head:
            copies.add(i)
    return frozenset(copies)


EPOCH_ARTEFACT_BEFORE = 1971  # dates before this year are a feed's zero timestamp


def scope_problem(topic: Topic, article: Article, now: datetime | None) -> str | None:
    """Why ``article`` is outside the topic's scope, or None.

    Unknown language or date pass: feeds often omit them, and a missing value
    should not silence an alert. A date before 1971 counts as unknown: it is a
    feed's zero timestamp, not a publication date, and must not drop a new item.
    """
    if topic.feed_tags is not None:
        tags = {t.lower() for t in article.feed_tags}
        if not tags & topic.feed_tags:
            return f"feed tags {sorted(tags)} not in scope {sorted(topic.feed_tags)}"
    if topic.languages is not None and article.language:
        lang = article.language.lower().split("-")[0].split("_")[0]
        if lang not in topic.languages:
            return f"language {article.language!r} not in scope {sorted(topic.languages)}"
    if topic.max_age is not None and article.published is not None \
            and article.published.year >= EPOCH_ARTEFACT_BEFORE:
        now = now or datetime.now(UTC)
        published = article.published
        if published.tzinfo is None:
            published = published.replace(tzinfo=UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        if now - published > topic.max_age:
            return f"published {published.isoformat()} is older than {topic.max_age}"
    return None


@dataclass(slots=True)
class TopicEvaluator:
    """Evaluates one topic's condition tree over one article's occurrences."""

    topic: Topic
    found: dict[int, list[Occurrence]]
    analysed: AnalysedArticle
    cache: dict[tuple[Node, _Ctx], _Result] = field(default_factory=dict)
    sentence_index: dict[int, frozenset[tuple[str, int]]] = field(default_factory=dict)
    field_index: dict[int, dict[str, list[_Hit]]] = field(default_factory=dict)
    blocked: dict[tuple[tuple[Node, int | None], ...], frozenset[tuple[str, int]]] = field(
        default_factory=dict)
    headline_copies: frozenset[int] = frozenset()  # body sentences that repeat the title
    memo: TreeMemo = field(default_factory=TreeMemo)
    excepted: int = 0  # occurrences dropped by except_near (a feature of the learned stage)

    def field_of(self, occ: Occurrence) -> str:
        """The lede is the body's first ``lede_sentences`` sentences."""
        # A headline repeated as the body's first line is not part of the lede.
        if occ.field == "body" and occ.sent < self.topic.lede_sentences + len(self.headline_copies):
            return "lede"
        return occ.field

    def points(self, hit: _Hit) -> float:
        return hit.weight * self.topic.field_weights.get(self.field_of(hit.occ), 1.0)

    # --- windows ---

    def close(self, a: Occurrence, b: Occurrence, within: int | None) -> bool:
        """Same field and sentence (within None), or at most ``within`` words apart."""
        if a.field != b.field:
            return False
        if within is None:
            return a.sent == b.sent
        first, second = (a, b) if a.start <= b.start else (b, a)
        if second.start < first.end:
            return True  # overlapping spans
        ft = self.analysed.field(a.field)
        assert ft is not None
        return ft.word_pos(second.start) - ft.word_pos(first.end) + 1 <= within

    # --- evaluation ---

    def eval(self, node: Node, ctx: _Ctx = _NO_CTX) -> _Result:
        if node.kind == "leaf":
            if not self.found.get(node.leaf):
                # Most leaves of a big topic did not occur: their result cannot depend
                # on the context, so skip narrowing it and the cache (a third of the
                # cost of matching with the seed pack).
                return _FAIL if node.min_count > 0 else _EMPTY_OK
        else:
            # A group none of whose leaves occurred fails without walking it (most
            # lists of a pack), unless a "none" or a min_count 0 inside could hold.
            leaves = self.memo.needs_a_leaf(node)
            if leaves is not None and self.found.keys().isdisjoint(leaves):
                return _FAIL
        key = (node, ctx)
        res = self.cache.get(key)
        if res is None:
            res = self.cache[key] = self._eval(node, ctx)
        return res

    def _narrow(self, node: Node, ctx: _Ctx) -> _Ctx:
        fields, excepts = ctx
        if node.fields is not None:
            fields = node.fields if fields is None else fields & node.fields
        if node.except_near:
            excepts = excepts + tuple((e, node.within) for e in node.except_near)
        return (fields, excepts)

    def _eval(self, node: Node, ctx: _Ctx) -> _Result:
        ctx = self._narrow(node, ctx)
        if node.kind == "leaf":
            return self._leaf(node, ctx)
        if node.kind == "near":
            return self._near(node, ctx)
        if node.kind == "any":
            # Skip the call for a listed term that did not occur (most of a list).
            found = self.found
            results = [self.eval(c, ctx) for c in node.children
                       if c.kind != "leaf" or c.min_count <= 0 or found.get(c.leaf)]
        else:
            results = [self.eval(c, ctx) for c in node.children]
        if node.kind == "none":
            return _Result(not any(r.ok for r in results))
        if node.kind == "all" and not all(r.ok for r in results):
            return _FAIL
        if node.weight == 1.0:  # the common case: the children's hits as they are
            hits = tuple(h for r in results if r.ok for h in r.hits)
        else:
            hits = tuple(
                _Hit(h.occ, h.term, h.weight * node.weight, h.src)
                for r in results if r.ok for h in r.hits
            )
        ok = any(r.ok for r in results) and self._enough(node, hits)
        return _Result(ok, hits if ok else ())

    def _enough(self, node: Node, hits: tuple[_Hit, ...]) -> bool:
        if len(hits) < node.min_count:
            return False
        if node.min_sentences > 1 and len({(h.occ.field, h.occ.sent) for h in hits}) < (
            node.min_sentences
        ):
            return False
        return node.min_distinct <= 1 or len({h.term for h in hits}) >= node.min_distinct

    def _leaf(self, node: Node, ctx: _Ctx) -> _Result:
        fields, excepts = ctx
        hits = []
        for occ in self.found.get(node.leaf, ()):
            if fields is not None and self.field_of(occ) not in fields:
                continue
            if excepts and self._excepted(occ, excepts):
                self.excepted += 1
                continue
            hits.append(_Hit(occ, node.label, node.weight, id(node)))
        ok = len(hits) >= node.min_count
        return _Result(ok, tuple(hits) if ok else ())

    def _excepted(self, occ: Occurrence, excepts: tuple[tuple[Node, int | None], ...]) -> bool:
        blocked = self.blocked.get(excepts)
        if blocked is None:
            # The sentences every sentence-window exception holds in, as one set.
            sentences: set[tuple[str, int]] = set()
            for ex, within in excepts:
                if within is None:
                    sentences |= self._sentences_of(ex)
            blocked = self.blocked[excepts] = frozenset(sentences)
        if (occ.field, occ.sent) in blocked:
            return True
        for ex, within in excepts:
            if within is None:
                continue
            for h in self._by_field(ex).get(occ.field, ()):
                if self.close(occ, h.occ, within):
                    return True
        return False

    def _sentences_of(self, node: Node) -> frozenset[tuple[str, int]]:
        """The (field, sentence) pairs where ``node`` holds: sentence windows are set look-ups."""
        key = id(node)
        got = self.sentence_index.get(key)
        if got is None:
            got = self.sentence_index[key] = frozenset(
                (h.occ.field, h.occ.sent) for h in self.eval(node).hits)
        return got

    def _by_field(self, node: Node) -> dict[str, list[_Hit]]:
        key = id(node)
        got = self.field_index.get(key)
        if got is None:
            got = self.field_index[key] = defaultdict(list)
            for h in self.eval(node).hits:
                got[h.occ.field].append(h)
        return got

    def _near(self, node: Node, ctx: _Ctx) -> _Result:
        parts = [self.eval(c, ctx).hits for c in node.children]
        if not all(parts):
            return _FAIL
        # Partners filed by sentence (a sentence window) or by field: each anchor
        # compares with its own sentence's or field's hits only.
        sentence = node.within is None
        index: list[dict[tuple[str, int], list[_Hit]]] = []
        for other in parts[1:]:
            by: dict[tuple[str, int], list[_Hit]] = defaultdict(list)
            for h in other:
                by[(h.occ.field, h.occ.sent if sentence else 0)].append(h)
            index.append(by)
        hits: dict[Occurrence, _Hit] = {}
        anchors: set[Occurrence] = set()
        for a in parts[0]:
            partners = []
            place = (a.occ.field, a.occ.sent if sentence else 0)
            for by in index:
                near = [h for h in by.get(place, ())
                        if h.occ != a.occ and (sentence or self.close(a.occ, h.occ, node.within))]
                if not near:
                    break
                partners.extend(near)
            else:
                anchors.add(a.occ)
                weight = a.weight * node.weight
                old = hits.get(a.occ)
                # One span can reach the anchor list twice (as a term and as a nested
                # proximity's partner, weight 0): the scoring copy is kept.
                if old is None or old.weight < weight:
                    hits[a.occ] = _Hit(a.occ, a.term, weight, id(node))
                for p in partners:
                    hits.setdefault(p.occ, _Hit(p.occ, p.term, 0.0, id(node)))
        if len(anchors) < node.min_count:
            return _FAIL
        return _Result(True, tuple(hits.values()))

    # --- topic ---

    def _scored(self, hits: Iterable[_Hit]) -> list[_Hit]:
        """One hit per matched span and scoring node (the best), capped at max_count
        per term. A span reached twice through the same node (a list named in two
        groups) scores once; a proximity bonus on the same span adds to it."""
        best: dict[tuple[str, int, int, int], _Hit] = {}
        for h in hits:
            k = (h.occ.field, h.occ.start, h.occ.end, h.src)
            if k not in best or self.points(h) > self.points(best[k]):
                best[k] = h
        ordered = self._outermost(best.values())
        ordered.sort(key=lambda h: -self.points(h))
        if self.topic.max_count is None:
            return ordered
        per_term: dict[str, int] = defaultdict(int)
        kept = []
        for h in ordered:
            if per_term[h.term] < self.topic.max_count or self.points(h) == 0:
                per_term[h.term] += 1
                kept.append(h)
        return kept

    @staticmethod
    def _outermost(hits: Iterable[_Hit]) -> list[_Hit]:
        """Drop a scoring hit inside a longer one ("negotiations" within "peace
        negotiations"): one mention scores once, as its most specific term."""
        spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
        hits = list(hits)
        for h in hits:
            if h.weight:
                spans[h.occ.field].append((h.occ.start, h.occ.end))
        kept = []
        for h in hits:
            s, e = h.occ.start, h.occ.end
            inside = any(
                os <= s and e <= oe and (os, oe) != (s, e) for os, oe in spans[h.occ.field]
            )
            if not inside:
                kept.append(h)
        return kept

    def explain(self) -> TopicExplanation:
        t = self.topic
        root = self.eval(t.terms)
        # Proximity partners (weight 0: "Ukraine" next to "talks") qualify a hit
        # but are not terms of the topic: they neither count nor show.
        hits = [h for h in self._scored(root.hits) if h.weight]
        score = round(sum(self.points(h) for h in hits), 4)
        distinct = len({h.term for h in hits})
        body = self.analysed.field("body")
        threshold = t.threshold_for(body.word_pos(len(body.doc)) if body else 0)
        # Each reason says what was missing and by how much (test-rule prints them).
        reasons = []
        if score < threshold:
            longer = f" (raised from {t.threshold:g} for a long body)" if threshold > t.threshold else ""
            short = round(threshold - score, 4)
            reasons.append(f"score {score:g} < threshold {threshold:g}{longer}: {short:g} more "
                           f"point{'s' if short != 1 else ''} needed")
        if distinct < t.min_terms:
            reasons.append(f"{distinct} distinct terms < min_terms {t.min_terms}")
        require_met, require_hits = [], 0
        for i, req in enumerate(t.require, 1):
            res = self.eval(req)
            require_met.append(res.ok)
            require_hits += sum(len(self.found.get(leaf, ())) for leaf in self.memo.leaves_under(req))
            if not res.ok:
                reasons.append(f"require #{i} not met: {self._shortfall(req)}")
        excluded = 0
        for i, exc in enumerate(t.exclude, 1):
            res = self.eval(exc)
            if res.ok:
                excluded += 1
                terms = ", ".join(dict.fromkeys(h.term for h in res.hits)) or exc.label
                reasons.append(f"excluded by exclude #{i}: {terms} ({exc.source})")
        hits.sort(key=lambda h: (_FIELD_ORDER[h.occ.field], h.occ.start, -self.points(h)))
        term_hits = self._term_hits(hits)
        outcome = RuleOutcome(
            fired=not reasons, score=score, threshold=threshold, base_threshold=t.threshold,
            hits=term_hits, require_met=tuple(require_met), require_hits=require_hits,
            excluded=excluded, excepted=self.excepted,
        )
        return TopicExplanation(
            topic=t.id, name=t.name, fired=not reasons, score=score, threshold=threshold,
            distinct_terms=distinct, min_terms=t.min_terms, severity=t.severity,
            channels=t.channels, hits=term_hits, evidence=self.evidence(hits),
            reasons=tuple(reasons), language=self.analysed.language,
            article_language=self.analysed.article_language,
            why=why_words(term_hits, threshold, t.threshold),
            outcome=outcome,
        )

    def _shortfall(self, node: Node) -> str:
        """What a failed condition lacked, in words: "3 war-context terms needed (or 1 in
        the headline), found 1 (none in the headline): kremlin". Each alternative is
        counted where it looks, on what it holds (its terms with their own conditions),
        so "found" never contradicts "needed"."""
        names = list(dict.fromkeys(re.findall(r"@(\w+)", node.label)))
        what = " / ".join(n.replace("_", "-") for n in names) if names else ""
        options = [c for c in node.children if c.kind != "none"] if node.kind == "any" else [node]
        needs: list[str] = []  # "3", "1 in the headline", "in 2 sentences"
        gots: list[str] = []   # what each alternative found where it looks
        found: dict[str, None] = {}
        for o in options or [node]:
            # The same condition anywhere, once: what it holds before "where" and "how many".
            hits = [h for h in self.eval(self.memo.loose(o)).hits if h.weight]
            found.update(dict.fromkeys(h.occ.text.lower() for h in hits))
            if o.fields:
                where = "/".join(_FIELD_NAMES.get(f, f) for f in sorted(o.fields, key=_field_rank))
                needs.append(f"{max(1, o.min_count)} in the {where}")
                n = sum(1 for h in hits if self.field_of(h.occ) in o.fields)
                gots.append(f"{n or 'none'} in the {where}")
            elif o.min_sentences > 1:
                needs.append(f"in {o.min_sentences} sentences")
                n = len({(h.occ.field, h.occ.sent) for h in hits})
                gots.append(f"{n} sentence{'s' if n != 1 else ''}")
            else:
                needs.append(str(max(1, o.min_count)))
                gots.append(str(len(dict.fromkeys(h.occ.text.lower() for h in hits))))
        first, rest = needs[0], needs[1:]
        count, _, where = first.partition(" in ") if first[0].isdigit() else ("", "", first[3:])
        plural = "" if count == "1" else "s"
        noun = f"{what} term{plural}" if what else node.label
        head = " ".join(x for x in (count, noun, f"in {where}" if where else "") if x)
        others = f" (or {', '.join(rest)})" if rest else ""
        got = gots[0] + (f" ({', '.join(gots[1:])})" if gots[1:] else "")
        terms = list(found)
        shown = ", ".join(terms[:6]) + (f" (+{len(terms) - 6})" if len(terms) > 6 else "")
        return (f"{head}{others} needed, found {got}"
                + (f": {shown}" if terms else "") + f" ({node.source})")

    def _term_hits(self, hits: list[_Hit]) -> tuple[TermHit, ...]:
        """One TermHit per matched span; a span scored by two nodes (a term and a
        proximity bonus) shows once with the points added up."""
        merged: dict[tuple[str, int, int], TermHit] = {}
        for h in hits:
            key = (h.occ.field, h.occ.start, h.occ.end)
            pts = self.points(h)
            if key in merged:
                old = merged[key]
                merged[key] = TermHit(term=old.term, text=old.text, field=old.field,
                                      sentence=old.sentence, weight=round(old.weight + pts, 4))
            else:
                merged[key] = TermHit(term=shown_term(h.term, h.occ.text), text=h.occ.text,
                                      field=self.field_of(h.occ),
                                      sentence=h.occ.sent, weight=round(pts, 4))
        return tuple(merged.values())

    def evidence(self, hits: list[_Hit]) -> tuple[EvidenceSentence, ...]:
        """The best one to three sentences, terms marked ``**like this**``."""
        by_sent: dict[tuple[str, int], list[_Hit]] = defaultdict(list)
        for h in hits:
            by_sent[(h.occ.field, h.occ.sent)].append(h)

        def rank(item: tuple[tuple[str, int], list[_Hit]]) -> tuple[float, float, int, int]:
            (fname, sent), hs = item
            return (-len({h.term for h in hs}), -sum(self.points(h) for h in hs),
                    _FIELD_ORDER[fname], sent)

        best = sorted(by_sent.items(), key=rank)[:MAX_EVIDENCE]
        best.sort(key=lambda it: (_FIELD_ORDER[it[0][0]], it[0][1]))
        out = []
        for (fname, sent), hs in best:
            ft = self.analysed.field(fname)
            assert ft is not None
            s, e = ft.sentence_span(sent)
            text = ft.text[s:e]
            spans = sorted({(h.occ.cstart - s, h.occ.cend - s) for h in hs})
            out.append(EvidenceSentence(
                field=self.field_of(hs[0].occ), text=" ".join(text.split()),
                marked=" ".join(mark(text, spans).split()),
                terms=tuple(dict.fromkeys(shown_term(h.term, h.occ.text) for h in hs)),
            ))
        return tuple(out)


_FIELD_NAMES = {"title": "headline", "summary": "summary", "lede": "lede", "body": "body"}


def _field_rank(name: str) -> int:
    return _FIELD_ORDER.get(name, 9)
