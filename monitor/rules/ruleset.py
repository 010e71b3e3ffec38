"""The watch-rule language: load rule files into a compiled, spaCy-free RuleSet.

A rule file (YAML) holds named term ``lists``, an optional ``gazetteer`` of
entity names and the ``topics``. A topic scores an article with weighted
conditions (``terms``), may demand conditions (``require``) and be blocked by
others (``exclude``). See docs/rules.md for the user reference.

Loading needs no spaCy: term texts are kept as written and tokenised later by
``monitor.rules.classifier`` with the analyser's tokenizer, so ``newsmon`` can validate a
rule file quickly and every error still names the file, line and key.

A mapping keyed by language codes (``{ru: [перемирие], uk: ["перемир'я"]}``) is a
*language block*: the terms in it are that language's only (``LeafSpec.language``),
compiled with its lemmatizer and looked for in its articles; everything else is
shared by every language (see docs/rules.md, "Languages").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from monitor.analysis.languages import LANGUAGE_CODES
from monitor.rules.compiled import (
    DEFAULT_FIELD_WEIGHTS,
    Example,
    FieldName,
    Node,
    RuleSet,
    Severity,
    Topic,
)
from monitor.rules.conditions import ConditionCompiler, ListDef, Loc
from monitor.yamlfile import (
    ConfigError,
    ConfigErrors,
    YamlDocument,
    load_yaml_file,
    locate,
    to_plain,
)

# Gazetteer sections map to one label each (the label an EntityRuler assigns).
GAZETTEER_LABELS: dict[str, str] = {"person": "PERSON", "org": "ORG", "place": "GPE"}

_ID_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"
_AGE_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# --- topic and file schema (pydantic; conditions are in monitor.rules.conditions) ------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LengthModel(_Strict):
    """Raise the threshold for long bodies: a passing mention in a long article
    should not fire where the same count in a short one does."""

    free_words: Annotated[int, Field(ge=0)] = 500
    per_1000_words: Annotated[float, Field(ge=0, le=100)] = 1.0
    max_extra: Annotated[float, Field(ge=0)] | None = None


class ExampleModel(_Strict):
    text: str
    title: str = ""
    lang: str | None = None


class ScopeModel(_Strict):
    feed_tags: list[str] | None = None
    languages: list[str] | None = None
    max_age: str | None = None


class TopicModel(_Strict):
    id: Annotated[str, StringConstraints(pattern=_ID_PATTERN, max_length=64)]
    name: str | None = None
    description: str = ""
    enabled: bool = True
    severity: Severity = "normal"
    channels: list[str] = []
    threshold: Annotated[float, Field(gt=0)] = 1.0
    long_articles: LengthModel | None = None
    min_terms: Annotated[int, Field(ge=1, le=100)] = 1
    max_count: Annotated[int, Field(ge=1)] | None = None
    lede_sentences: Annotated[int, Field(ge=0, le=20)] = 2
    fields: dict[FieldName, Annotated[float, Field(ge=0, le=100)]] = {}
    scope: ScopeModel | None = None
    terms: Annotated[list[Any], Field(min_length=1)]
    require: list[Any] = []
    exclude: list[Any] = []
    should_match: list[str | ExampleModel] = []
    should_not_match: list[str | ExampleModel] = []


class FileModel(_Strict):
    version: Literal[1] = 1
    lists: dict[Annotated[str, StringConstraints(pattern=_ID_PATTERN)], list[Any]] = {}
    gazetteer: dict[Literal["person", "org", "place"], list[str]] = {}
    topics: list[Any] = []


# --- loading -----------------------------------------------------------------------


def parse_age(text: str) -> timedelta | None:
    m = _AGE_RE.match(text)
    if not m:
        return None
    return timedelta(**{_AGE_UNITS[m.group(2)]: int(m.group(1))})


def _rule_files(paths: Sequence[Path]) -> tuple[list[Path], list[ConfigError]]:
    files: list[Path] = []
    errors: list[ConfigError] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                errors.append(ConfigError("folder holds no .yaml rule files", path=p))
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            errors.append(ConfigError("rule file not found", path=p))
    return files, errors


def load_rules(paths: Sequence[Path] | Path) -> RuleSet:
    """Load rule files (or folders of ``*.yaml``) into one RuleSet.

    Raises ConfigErrors listing every problem with its file, line and key.
    """
    if isinstance(paths, str | Path):
        paths = [Path(paths)]
    files, errors = _rule_files(paths)
    docs: list[tuple[YamlDocument, FileModel]] = []
    comp = ConditionCompiler()
    comp.errors.extend(errors)
    for path in files:
        try:
            doc = load_yaml_file(path)
        except ConfigError as exc:
            comp.errors.append(exc)
            continue
        if doc.data is None:
            continue  # an empty file is allowed (e.g. a placeholder)
        try:
            model = FileModel.model_validate(to_plain(doc.data))
        except ValidationError as exc:
            comp.pyd_errors(exc, doc, ())
            continue
        docs.append((doc, model))
        for name, items in model.lists.items():
            if name in comp.lists:
                first = comp.lists[name]
                comp.error(doc, ("lists", name),
                           f"list {name} is already defined at {comp.where(first.doc, first.loc)}")
            else:
                comp.lists[name] = ListDef(items=items, doc=doc, loc=("lists", name))

    # Compile every list, so an unused broken list is still reported.
    for name, ldef in comp.lists.items():
        comp.compile_list(name, ldef.doc, ldef.loc)

    gazetteer: dict[str, list[str]] = {}
    topics: list[Topic] = []
    seen: dict[str, str] = {}
    for doc, model in docs:
        for section, names in model.gazetteer.items():
            gazetteer.setdefault(GAZETTEER_LABELS[section], []).extend(
                n.strip() for n in names if n.strip()
            )
        for i, raw in enumerate(model.topics):
            topic = _topic(comp, raw, doc, ("topics", i))
            if topic is None:
                continue
            if topic.id in seen:
                comp.error(doc, ("topics", i, "id"),
                           f"duplicate topic id {topic.id!r} (first defined at {seen[topic.id]})")
                continue
            seen[topic.id] = topic.where
            topics.append(topic)
    if comp.errors:
        raise ConfigErrors(comp.errors)
    return RuleSet(
        topics=topics, leaves=comp.leaves,
        gazetteer={k: tuple(dict.fromkeys(v)) for k, v in gazetteer.items()},
        files=tuple(str(f) for f in files),
    )


def _examples(
    comp: ConditionCompiler, items: Iterable[str | ExampleModel], doc: YamlDocument, loc: Loc
) -> tuple[Example, ...]:
    out = []
    for j, ex in enumerate(items):
        line, _ = locate(doc.data, (*loc, j))
        if isinstance(ex, str):
            out.append(Example(text=ex, title="", line=line))
            continue
        if ex.lang is not None and ex.lang not in LANGUAGE_CODES:
            comp.error(doc, (*loc, j, "lang"), f"unknown language {ex.lang!r} "
                                               f"(rule files know: {', '.join(LANGUAGE_CODES)})")
        out.append(Example(text=ex.text, title=ex.title, line=line, language=ex.lang))
    return tuple(out)


def _leaf_ids(node: Node, acc: set[int], seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    if node.kind == "leaf":
        acc.add(node.leaf)
    for c in node.children:
        _leaf_ids(c, acc, seen)


def _topic(comp: ConditionCompiler, raw: Any, doc: YamlDocument, loc: Loc) -> Topic | None:
    try:
        model = TopicModel.model_validate(raw)
    except ValidationError as exc:
        comp.pyd_errors(exc, doc, loc)
        return None
    if not model.enabled:
        return None
    before = len(comp.errors)
    terms = comp.children(model.terms, doc, (*loc, "terms"))
    require = comp.children(model.require, doc, (*loc, "require"))
    exclude = comp.children(model.exclude, doc, (*loc, "exclude"))
    max_age = None
    feed_tags = languages = None
    if model.scope is not None:
        if model.scope.max_age is not None:
            max_age = parse_age(model.scope.max_age)
            if max_age is None:
                comp.error(doc, (*loc, "scope", "max_age"),
                           "max_age is a number and a unit: 90m, 12h, 3d, 2w")
        if model.scope.feed_tags is not None:
            feed_tags = frozenset(t.lower() for t in model.scope.feed_tags)
        if model.scope.languages is not None:
            languages = frozenset(lang.lower() for lang in model.scope.languages)
    if len(comp.errors) > before or terms is None or require is None or exclude is None:
        return None
    weights: dict[str, float] = dict(DEFAULT_FIELD_WEIGHTS)
    for field_name, weight in model.fields.items():
        weights[field_name] = weight
    line, _ = locate(doc.data, loc)
    root = Node(kind="any", label="terms", children=terms, source=comp.where(doc, loc))
    ids: set[int] = set()
    _leaf_ids(root, ids, set())
    length = model.long_articles
    return Topic(
        length_free_words=length.free_words if length else 0,
        length_per_1000=length.per_1000_words if length else 0.0,
        length_max_extra=length.max_extra if length else None,
        id=model.id, name=model.name or model.id, description=model.description,
        severity=model.severity, channels=tuple(model.channels), threshold=model.threshold,
        min_terms=model.min_terms, max_count=model.max_count,
        lede_sentences=model.lede_sentences, field_weights=weights, terms=root,
        require=require, exclude=exclude, feed_tags=feed_tags, languages=languages,
        max_age=max_age,
        should_match=_examples(comp, model.should_match, doc, (*loc, "should_match")),
        should_not_match=_examples(comp, model.should_not_match, doc, (*loc, "should_not_match")),
        path=str(doc.path), line=line, leaf_ids=frozenset(ids),
    )
