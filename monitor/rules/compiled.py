"""The compiled rule model: what a loaded rule file becomes, and what the matcher reads.

Plain dataclasses, no pydantic and no spaCy: ``monitor.rules.matching`` and
``monitor.rules.evaluator`` work on these; ``monitor.rules.ruleset`` builds them from
rule files (through ``monitor.rules.conditions`` for the conditions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import re2

FieldName = Literal["title", "summary", "lede", "body"]
Severity = Literal["low", "normal", "high", "critical"]
DEFAULT_FIELD_WEIGHTS: dict[str, float] = {"title": 3.0, "summary": 2.0, "lede": 2.0, "body": 1.0}
RE2_MAX_MEM = 8 << 20  # bytes per compiled regex: bounds what one pattern can cost


@dataclass(frozen=True, slots=True)
class LeafSpec:
    """One thing the matcher looks for; shared by every node that names it.

    ``kind`` is ``term`` (words/phrase, optionally with ``*`` wildcards inside
    words), ``regex`` (re2 over the raw field text) or ``entity``.
    """

    kind: Literal["term", "regex", "entity"]
    text: str = ""  # term text or regex pattern
    lemma: bool = True
    case: bool = False
    labels: frozenset[str] = frozenset()  # entity labels
    names: frozenset[str] = frozenset()  # entity texts (lower case); empty = any
    language: str | None = None  # only articles in this language (a language block); None: all


@dataclass(eq=False, slots=True)
class Node:
    """A condition in a topic. ``eq=False``: nodes hash by identity (cache keys)."""

    kind: Literal["leaf", "any", "all", "none", "near"]
    label: str = ""  # for leaves: the term as written; for groups: a short description
    leaf: int = -1  # index into RuleSet.leaves, for leaves
    children: tuple[Node, ...] = ()
    weight: float = 1.0
    fields: frozenset[str] | None = None
    min_count: int = 1
    min_sentences: int = 1
    min_distinct: int = 1
    within: int | None = None  # near / except_near window in words; None = same sentence
    except_near: tuple[Node, ...] = ()
    source: str = ""  # file:line, for explanations


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    title: str
    line: int | None
    language: str | None = None  # as an article's tag would say; None: detected from the text


@dataclass(slots=True)
class Topic:
    id: str
    name: str
    severity: str
    channels: tuple[str, ...]
    threshold: float
    min_terms: int
    max_count: int | None
    lede_sentences: int
    field_weights: dict[str, float]
    terms: Node  # an ``any`` node: what scores
    require: tuple[Node, ...]
    exclude: tuple[Node, ...]
    feed_tags: frozenset[str] | None
    languages: frozenset[str] | None
    max_age: timedelta | None
    should_match: tuple[Example, ...]
    should_not_match: tuple[Example, ...]
    path: str
    line: int | None
    description: str = ""
    leaf_ids: frozenset[int] = frozenset()  # every leaf the topic can score with
    length_free_words: int = 0
    length_per_1000: float = 0.0  # 0: the threshold does not grow with length
    length_max_extra: float | None = None

    def threshold_for(self, body_words: int) -> float:
        """The threshold for a body of ``body_words`` words (see ``long_articles``)."""
        extra = max(0, body_words - self.length_free_words) / 1000 * self.length_per_1000
        if self.length_max_extra is not None:
            extra = min(extra, self.length_max_extra)
        return round(self.threshold + extra, 2)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(slots=True)
class RuleSet:
    topics: list[Topic]
    leaves: list[LeafSpec]
    gazetteer: dict[str, tuple[str, ...]] = field(default_factory=dict)  # label -> names
    files: tuple[str, ...] = ()

    def topic(self, topic_id: str) -> Topic:
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise KeyError(topic_id)


def compile_regex(pattern: str, *, case: bool) -> Any:
    """Compile with re2: linear time, so no pattern can stall a worker."""
    options = re2.Options()
    options.case_sensitive = case
    options.log_errors = False
    options.max_mem = RE2_MAX_MEM
    return re2.compile(pattern, options)
