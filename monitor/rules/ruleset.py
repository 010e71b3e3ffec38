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
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import re2
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from monitor.analysis.languages import LANGUAGE_CODES
from monitor.yamlfile import (
    ConfigError,
    ConfigErrors,
    YamlDocument,
    load_yaml_file,
    locate,
    to_plain,
)

FieldName = Literal["title", "summary", "lede", "body"]
Severity = Literal["low", "normal", "high", "critical"]
DEFAULT_FIELD_WEIGHTS: dict[str, float] = {"title": 3.0, "summary": 2.0, "lede": 2.0, "body": 1.0}

# Friendly entity kinds → spaCy labels; raw spaCy labels (GPE, NORP...) are accepted too.
ENTITY_KINDS: dict[str, frozenset[str]] = {
    "person": frozenset({"PERSON"}),
    "org": frozenset({"ORG"}),
    "place": frozenset({"GPE", "LOC", "FAC"}),
}
# Gazetteer sections map to one label each (the label an EntityRuler assigns).
GAZETTEER_LABELS: dict[str, str] = {"person": "PERSON", "org": "ORG", "place": "GPE"}

MAX_EXPANDED_NODES = 100_000  # nested list references could otherwise multiply work
MAX_TERM_CHARS = 200
MAX_REGEX_CHARS = 1_000
MAX_WILDCARD_STARS = 3  # per word: each star widens what one word may match
RE2_MAX_MEM = 8 << 20  # bytes per compiled regex: bounds what one pattern can cost

_KEYWORDS = ("term", "regex", "list", "entity", "any", "all", "none", "near")
_WILDCARD_RE = re.compile(r"^[\w'’.\-]*\*[\w'’.\-*]*$")
_ID_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"
_AGE_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_LANGUAGE_KEY = re.compile(r"^[a-z]{2,3}$")  # a mapping keyed so is a language block
_CYRILLIC_LETTER = re.compile("[\u0400-\u04ff]")
_LATIN_LETTER = re.compile("[A-Za-z]")

# --- compiled form -----------------------------------------------------------------


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


# --- schema (pydantic) ----------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Weight = Annotated[float, Field(gt=-1000, lt=1000)]
Within = int | Literal["sentence"]


class _Common(_Strict):
    weight: Weight = 1.0
    fields: list[FieldName] | None = None
    min_count: Annotated[int, Field(ge=1, le=1000)] = 1


class TermModel(_Common):
    term: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TERM_CHARS)]
    lemma: bool = True
    case: bool = False


class RegexModel(_Common):
    regex: Annotated[str, StringConstraints(min_length=1, max_length=MAX_REGEX_CHARS)]
    case: bool = False


class ListRefModel(_Common):
    list: str


class EntityModel(_Common):
    entity: str
    text: list[str] | None = None


class GroupModel(_Common):
    any: list[Any] | None = None
    all: list[Any] | None = None
    none: list[Any] | None = None
    min_sentences: Annotated[int, Field(ge=1, le=1000)] = 1
    min_distinct: Annotated[int, Field(ge=1, le=1000)] = 1
    except_near: list[Any] | None = None
    within: Within = "sentence"


class NearModel(_Common):
    near: Annotated[list[Any], Field(min_length=2, max_length=10)]
    within: Within = "sentence"


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


Loc = tuple[str | int, ...]


@dataclass(slots=True)
class _ListDef:
    items: list[Any]
    doc: YamlDocument
    loc: Loc
    node: Node | None = None
    compiling: bool = False


class _Compiler:
    """Turns validated YAML into Nodes; collects every error instead of stopping."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self.leaves: list[LeafSpec] = []
        self._leaf_ids: dict[LeafSpec, int] = {}
        self.lists: dict[str, _ListDef] = {}
        self._size: dict[int, int] = {}  # id(node) -> expanded size (bomb guard)
        self.language: str | None = None  # inside a language block: its code

    # errors
    def error(self, doc: YamlDocument, loc: Loc, message: str) -> None:
        line, col = locate(doc.data, loc)
        key = ".".join(str(p) for p in loc) or None
        self.errors.append(ConfigError(message, path=doc.path, line=line, col=col, key=key))

    def pyd_errors(self, exc: ValidationError, doc: YamlDocument, loc: Loc) -> None:
        for err in exc.errors(include_input=False, include_url=False):
            full = loc + tuple(err.get("loc", ()))
            msg = err.get("msg", "invalid value")
            if err.get("type") == "extra_forbidden":
                msg = "unknown key (check the spelling)"
            self.error(doc, full, msg)

    def where(self, doc: YamlDocument, loc: Loc) -> str:
        line, _ = locate(doc.data, loc)
        return f"{doc.path}:{line}" if line else str(doc.path)

    # leaves
    def leaf(self, spec: LeafSpec) -> int:
        if self.language is not None:
            spec = replace(spec, language=self.language)
        if spec not in self._leaf_ids:
            self._leaf_ids[spec] = len(self.leaves)
            self.leaves.append(spec)
        return self._leaf_ids[spec]

    def size(self, node: Node) -> int:
        """Node count with list references expanded; computed once per node."""
        key = id(node)
        if key not in self._size:
            self._size[key] = 1 + sum(self.size(c) for c in node.children) + sum(
                self.size(c) for c in node.except_near
            )
        return self._size[key]

    # nodes
    def node(self, raw: Any, doc: YamlDocument, loc: Loc) -> Node | None:
        """Compile one condition; on error record it and return None."""
        if isinstance(raw, str):
            if raw.startswith("@"):
                return self.list_ref(raw[1:], doc, loc, ListRefModel(list=raw[1:]))
            return self.term(TermModel(term=raw), doc, loc)
        if isinstance(raw, list):  # a bare list is shorthand for {any: [...]}
            return self.group("any", GroupModel(any=raw), doc, loc)
        if not isinstance(raw, dict):
            self.error(doc, loc, "a condition is a term string, a list or a mapping")
            return None
        present = [k for k in _KEYWORDS if k in raw]
        if not present and raw and all(isinstance(k, str) and _LANGUAGE_KEY.match(k) for k in raw):
            return self.language_block(raw, doc, loc)
        if len(present) != 1:
            what = ", ".join(present) if present else "none"
            self.error(
                doc, loc,
                f"a condition needs exactly one of {', '.join(_KEYWORDS)}, or is a language "
                f"block keyed by language codes such as ru: [...] (found {what})",
            )
            return None
        kind = present[0]
        model_cls: Any = {
            "term": TermModel, "regex": RegexModel, "list": ListRefModel,
            "entity": EntityModel, "near": NearModel,
        }.get(kind, GroupModel)
        try:
            model = model_cls.model_validate(raw)
        except ValidationError as exc:
            self.pyd_errors(exc, doc, loc)
            return None
        if isinstance(model, TermModel):
            return self.term(model, doc, loc)
        if isinstance(model, RegexModel):
            return self.regex(model, doc, loc)
        if isinstance(model, ListRefModel):
            return self.list_ref(model.list, doc, loc, model)
        if isinstance(model, EntityModel):
            return self.entity(model, doc, loc)
        if isinstance(model, NearModel):
            return self.near(model, doc, loc)
        assert isinstance(model, GroupModel)
        return self.group(kind, model, doc, loc)

    def language_block(self, raw: dict[str, Any], doc: YamlDocument, loc: Loc) -> Node | None:
        """``{ru: [...], uk: [...]}``: each language's conditions, tagged with it."""
        if self.language is not None:
            self.error(doc, loc, f"a language block inside the {self.language!r} block "
                                 "(each term belongs to one language)")
            return None
        kids: list[Node] = []
        ok = True
        for code, items in raw.items():
            if code not in LANGUAGE_CODES:
                self.error(doc, (*loc, code), f"unknown language {code!r} "
                                              f"(rule files know: {', '.join(LANGUAGE_CODES)})")
                ok = False
                continue
            if items is None or items == []:
                self.error(doc, (*loc, code), f"the {code!r} block needs at least one condition")
                ok = False
                continue
            self.language = code
            try:
                if isinstance(items, list):
                    sub = self.children(items, doc, (*loc, code))
                else:
                    one = self.node(items, doc, (*loc, code))
                    sub = (one,) if one is not None else None
            finally:
                self.language = None
            if sub is None:
                ok = False
            else:
                kids.extend(sub)
        if not ok:
            return None
        node = Node(kind="any", label=f"{'/'.join(raw)} terms", children=tuple(kids),
                    source=self.where(doc, loc))
        return self.bounded(node, doc, loc)

    def _fields(self, model: _Common) -> frozenset[str] | None:
        return frozenset(model.fields) if model.fields else None

    def _leaf_node(
        self, spec: LeafSpec, label: str, model: _Common, doc: YamlDocument, loc: Loc
    ) -> Node:
        return Node(
            kind="leaf", label=label, leaf=self.leaf(spec), weight=model.weight,
            fields=self._fields(model), min_count=model.min_count, source=self.where(doc, loc),
        )

    def term(self, model: TermModel, doc: YamlDocument, loc: Loc) -> Node | None:
        text = " ".join(model.term.split())
        words = text.split(" ")
        for w in words:
            if "*" in w and (w == "*" or not _WILDCARD_RE.match(w)):
                self.error(doc, loc, f"bad wildcard {w!r}: '*' stands for letters inside a word")
                return None
            if w.count("*") > MAX_WILDCARD_STARS:
                self.error(doc, loc, f"wildcard {w!r} has {w.count('*')} '*': at most"
                           f" {MAX_WILDCARD_STARS} in one word")
                return None
            if _CYRILLIC_LETTER.search(w) and _LATIN_LETTER.search(w):
                latin = "".join(dict.fromkeys(_LATIN_LETTER.findall(w)))
                self.error(doc, loc, f"{w!r} mixes Cyrillic and Latin letters ({latin!r}: a Latin "
                                     "look-alike typed in a Cyrillic word?)")
                return None
        # Case-sensitive terms match the exact word forms; lemma matching is case-blind.
        spec = LeafSpec(
            kind="term", text=text if model.case else text.lower(),
            lemma=model.lemma and not model.case, case=model.case,
        )
        return self._leaf_node(spec, text, model, doc, loc)

    def regex(self, model: RegexModel, doc: YamlDocument, loc: Loc) -> Node | None:
        message = regex_problem(model.regex, case=model.case)
        if message:
            self.error(doc, (*loc, "regex"), message)
            return None
        spec = LeafSpec(kind="regex", text=model.regex, case=model.case, lemma=False)
        return self._leaf_node(spec, f"/{model.regex}/", model, doc, loc)

    def entity(self, model: EntityModel, doc: YamlDocument, loc: Loc) -> Node | None:
        kind = model.entity.strip()
        labels = ENTITY_KINDS.get(kind.lower())
        if labels is None:
            if not re.fullmatch(r"[A-Z_]{2,20}", kind):
                known = ", ".join(ENTITY_KINDS)
                self.error(doc, (*loc, "entity"),
                           f"unknown entity kind {kind!r} (use {known} or a spaCy label)")
                return None
            labels = frozenset({kind})
        names = frozenset(" ".join(n.lower().split()) for n in model.text or ())
        spec = LeafSpec(kind="entity", labels=labels, names=names, lemma=False)
        label = f"{kind}:{'|'.join(sorted(names))}" if names else kind
        return self._leaf_node(spec, label, model, doc, loc)

    def children(self, items: list[Any], doc: YamlDocument, loc: Loc) -> tuple[Node, ...] | None:
        out: list[Node] = []
        ok = True
        for i, item in enumerate(items):
            n = self.node(item, doc, (*loc, i))
            if n is None:
                ok = False
            else:
                out.append(n)
        return tuple(out) if ok else None

    def group(self, kind: str, model: GroupModel, doc: YamlDocument, loc: Loc) -> Node | None:
        items = getattr(model, kind)
        if not items:
            self.error(doc, (*loc, kind), f"'{kind}' needs at least one condition")
            return None
        kids = self.children(items, doc, (*loc, kind))
        excepts: tuple[Node, ...] | None = ()
        if model.except_near:
            excepts = self.children(model.except_near, doc, (*loc, "except_near"))
        within = self.window(model.within, doc, loc)
        if kids is None or excepts is None or within is False:
            return None
        node = Node(
            kind=kind,  # type: ignore[arg-type]  # kind is one of the Literal values, checked above
            label=f"{kind}({', '.join(c.label for c in kids[:3])}{', …' if len(kids) > 3 else ''})",
            children=kids, weight=model.weight, fields=self._fields(model),
            min_count=model.min_count, min_sentences=model.min_sentences,
            min_distinct=model.min_distinct, within=within, except_near=excepts,
            source=self.where(doc, loc),
        )
        return self.bounded(node, doc, loc)

    def near(self, model: NearModel, doc: YamlDocument, loc: Loc) -> Node | None:
        kids = self.children(model.near, doc, (*loc, "near"))
        within = self.window(model.within, doc, loc)
        if kids is None or within is False:
            return None
        for i, kid in enumerate(kids):
            if kid.kind in ("none", "near", "all"):
                self.error(doc, (*loc, "near", i),
                           "near takes terms, lists or 'any' groups, not all/none/near")
                return None
        where = "same sentence" if within is None else f"{within} words"
        node = Node(
            kind="near", label=f"near({', '.join(c.label for c in kids)}; {where})",
            children=kids, weight=model.weight, fields=self._fields(model),
            min_count=model.min_count, within=within, source=self.where(doc, loc),
        )
        return self.bounded(node, doc, loc)

    def window(self, within: Within, doc: YamlDocument, loc: Loc) -> int | Literal[False] | None:
        if within == "sentence":
            return None
        if isinstance(within, int) and 1 <= within <= 200:
            return within
        self.error(doc, (*loc, "within"), "within is a number of words (1-200) or 'sentence'")
        return False

    def bounded(self, node: Node, doc: YamlDocument, loc: Loc) -> Node | None:
        if self.size(node) > MAX_EXPANDED_NODES:
            self.error(doc, loc, f"condition expands to more than {MAX_EXPANDED_NODES} "
                                 "terms through nested lists")
            return None
        return node

    def list_ref(self, name: str, doc: YamlDocument, loc: Loc, model: _Common) -> Node | None:
        base = self.compile_list(name, doc, loc)
        if base is None:
            return None
        if model.weight == 1.0 and model.fields is None and model.min_count == 1:
            return base
        # A reference with its own weight/fields wraps the shared list node.
        return Node(
            kind="any", label=f"@{name}", children=(base,), weight=model.weight,
            fields=self._fields(model), min_count=model.min_count, source=self.where(doc, loc),
        )

    def compile_list(self, name: str, doc: YamlDocument, loc: Loc) -> Node | None:
        ldef = self.lists.get(name)
        if ldef is None:
            known = ", ".join(sorted(self.lists)) or "none defined"
            self.error(doc, loc, f"unknown list @{name} (lists: {known})")
            return None
        if ldef.node is not None:
            return ldef.node
        if ldef.compiling:
            self.error(doc, loc, f"list @{name} refers to itself (a cycle of list references)")
            return None
        ldef.compiling = True
        # A list keeps its own languages wherever it is named (even inside a language block).
        outer, self.language = self.language, None
        try:
            kids = self.children(ldef.items, ldef.doc, ldef.loc)
        finally:
            ldef.compiling = False
            self.language = outer
        if kids is None:
            return None
        if not kids:
            self.error(ldef.doc, ldef.loc, f"list {name} is empty")
            return None
        node = Node(kind="any", label=f"@{name}", children=kids,
                    source=self.where(ldef.doc, ldef.loc))
        ldef.node = self.bounded(node, ldef.doc, ldef.loc)
        return ldef.node


def regex_problem(pattern: str, *, case: bool) -> str | None:
    """Why re2 refuses a pattern, or None when it compiles."""
    try:
        compile_regex(pattern, case=case)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return f"regex not supported by re2 (no backreferences or lookaround): {detail}"
    return None


def compile_regex(pattern: str, *, case: bool) -> Any:
    """Compile with re2: linear time, so no pattern can stall a worker."""
    options = re2.Options()
    options.case_sensitive = case
    options.log_errors = False
    options.max_mem = RE2_MAX_MEM
    return re2.compile(pattern, options)


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
    comp = _Compiler()
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
                comp.lists[name] = _ListDef(items=items, doc=doc, loc=("lists", name))

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
    comp: _Compiler, items: Iterable[str | ExampleModel], doc: YamlDocument, loc: Loc
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


def _topic(comp: _Compiler, raw: Any, doc: YamlDocument, loc: Loc) -> Topic | None:
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
