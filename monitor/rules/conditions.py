"""Conditions of the rule language: one YAML condition → a compiled ``Node``.

A condition is a term, a regex, a list reference, an entity, a group
(``any``/``all``/``none``), a ``near`` or a language block. ``ConditionCompiler``
validates each with pydantic, compiles it into ``monitor.rules.compiled`` nodes
and records every error with its file, line and key instead of stopping;
``monitor.rules.ruleset`` drives it over whole rule files and topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import re2
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from monitor.analysis.languages import LANGUAGE_CODES
from monitor.rules.compiled import FieldName, LeafSpec, Node, compile_regex
from monitor.yamlfile import ConfigError, YamlDocument, locate

# Friendly entity kinds → spaCy labels; raw spaCy labels (GPE, NORP...) are accepted too.
ENTITY_KINDS: dict[str, frozenset[str]] = {
    "person": frozenset({"PERSON"}),
    "org": frozenset({"ORG"}),
    "place": frozenset({"GPE", "LOC", "FAC"}),
}

MAX_EXPANDED_NODES = 100_000  # nested list references could otherwise multiply work
MAX_TERM_CHARS = 200
MAX_REGEX_CHARS = 1_000
MAX_WILDCARD_STARS = 3  # per word: each star widens what one word may match

_KEYWORDS = ("term", "regex", "list", "entity", "any", "all", "none", "near")
_WILDCARD_RE = re.compile(r"^[\w'’.\-]*\*[\w'’.\-*]*$")
_LANGUAGE_KEY = re.compile(r"^[a-z]{2,3}$")  # a mapping keyed so is a language block
_CYRILLIC_LETTER = re.compile("[\u0400-\u04ff]")
_LATIN_LETTER = re.compile("[A-Za-z]")


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


Loc = tuple[str | int, ...]  # a key path in a YAML document, for locating errors


@dataclass(slots=True)
class ListDef:
    """A named ``lists:`` entry of a rule file; compiled once, when first named."""

    items: list[Any]
    doc: YamlDocument
    loc: Loc
    node: Node | None = None
    compiling: bool = False


class ConditionCompiler:
    """Turns validated YAML into Nodes; collects every error instead of stopping."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self.leaves: list[LeafSpec] = []
        self._leaf_ids: dict[LeafSpec, int] = {}
        self.lists: dict[str, ListDef] = {}
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
