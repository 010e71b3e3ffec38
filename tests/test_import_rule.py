"""The import rule: which part of ``monitor`` may import which.

=========================  ==============================================================
layer                      may import (inside ``monitor``)
=========================  ==============================================================
base: ``models``,          other base modules only
``records``, ``ports``,
``errors``, ``identity``,
``notices``, ``config``,
``yamlfile``, ``logs``,
``_optional``
stage: ``ingest``,         base, and the stage packages (each other)
``analysis``, ``rules``,
``delivery``, ``stories``
``storage``                base only
``runtime``                anything but ``cli``
``cluster``                anything but ``cli`` and ``web`` (the scale-out processes: runtime layer)
``web``                    anything but ``cli`` (``newsmon web``: a top layer beside it)
``cli``                    anything (it is the top)
``monitor/__init__.py``    anything but ``cli`` (the facade; it imports lazily)
``monitor/__main__.py``    anything (``python -m monitor`` is the CLI)
=========================  ==============================================================

Also: nothing inside the package imports the facade (``from monitor import
load_config``): it re-exports from the modules, so they import the defining
module instead, and ``monitor.cli`` is imported only by ``__main__`` and ``cli``.

Every ``import`` counts, wherever it is: at the top, inside a function (a lazy
import is still a dependency) or under ``if TYPE_CHECKING`` (a type is one too).
The modules are read with ``ast``, never imported.

``ALLOWED_FOR_NOW`` lists the known violations being fixed elsewhere, each with
its reason; an entry that no longer matches a violation fails too, so the list
only shrinks.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "monitor"

BASE_MODULES = frozenset({
    "models", "records", "ports", "errors", "identity", "notices", "config", "yamlfile", "logs",
    "_optional",  # the optional-dependency helper: imports only errors
})
STAGE_PACKAGES = frozenset({
    "ingest", "analysis", "rules", "delivery",
    "stories",  # text fingerprints and near-duplicates (new; pure functions like a stage)
})
FACADE, ENTRY = "facade", "entry"

# What each layer may import. None of them may import the facade or cli (see may_import).
ALLOWED_TARGETS: dict[str, frozenset[str]] = {
    "base": frozenset({"base"}),
    "stage": frozenset({"base", "stage"}),
    "storage": frozenset({"base", "storage"}),
    "runtime": frozenset({"base", "stage", "storage", "runtime"}),
    "cluster": frozenset({"base", "stage", "storage", "runtime", "cluster"}),
    "web": frozenset({"base", "stage", "storage", "runtime", "web"}),
    "cli": frozenset({"base", "stage", "storage", "runtime", "web", "cli", "cluster"}),
    FACADE: frozenset({"base", "stage", "storage", "runtime"}),
    ENTRY: frozenset({"base", "stage", "storage", "runtime", "web", "cli", "cluster"}),
}

# (file relative to the repository, imported module) → why it is still allowed.
# The lead empties this as the fixes land; never add to it without a reason and an owner.
ALLOWED_FOR_NOW: dict[tuple[str, str], str] = {}


@dataclass(frozen=True, slots=True)
class Import:
    file: str  # relative to the repository: monitor/ingest/fetch.py
    line: int
    module: str  # the imported monitor module: monitor.storage.db
    statement: str  # the source text of the import

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.statement}"


def layer_of_file(path: Path) -> str:
    """The layer of a source file under ``monitor/`` (fails for one not in the table)."""
    parts = path.relative_to(PACKAGE).parts
    if parts == ("__init__.py",):
        return FACADE
    if parts == ("__main__.py",):
        return ENTRY
    return _layer_of_name(parts[0].removesuffix(".py"), str(path))


def layer_of_module(module: str) -> str:
    """The layer of an imported module name (``monitor.storage.db`` → storage)."""
    parts = module.split(".")
    if parts == ["monitor"]:
        return FACADE
    return _layer_of_name(parts[1], module)


def _layer_of_name(name: str, where: str) -> str:
    if name in BASE_MODULES:
        return "base"
    if name in STAGE_PACKAGES:
        return "stage"
    if name in ("storage", "runtime", "web", "cli", "cluster"):
        return name
    raise AssertionError(f"{where}: {name!r} is in no layer of the import rule; add it to the table "
                         f"in tests/test_import_rule.py (and docs/architecture.md)")


def _is_submodule(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def _package_of(path: Path) -> list[str]:
    """The dotted package a file belongs to, as parts (what ``from . import`` starts at)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1]  # monitor/ingest/fetch.py and monitor/ingest/__init__.py: monitor.ingest


def monitor_imports(path: Path) -> list[Import]:
    """Every import of a ``monitor`` module in one file, with its line."""
    source = path.read_text(encoding="utf-8")
    file = str(path.relative_to(PACKAGE.parent))
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        text = " ".join((ast.get_source_segment(source, node) or "").split())
        for module in dict.fromkeys(_imported_modules(node, path)):
            if module == "monitor" or module.startswith("monitor."):
                found.append(Import(file, node.lineno, module, text))
    return sorted(found, key=lambda i: (i.line, i.module))


def _imported_modules(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolve against this file's package
        package = _package_of(path)
        base = package[: len(package) - node.level + 1]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    if target == "monitor":
        # from monitor import errors → the submodule; from monitor import load_config → the facade
        return [f"monitor.{a.name}" if _is_submodule(a.name) else "monitor" for a in node.names]
    return [target]


def may_import(source_layer: str, source_file: str, target: str) -> str | None:
    """None when the import is allowed, else the rule it breaks."""
    target_layer = layer_of_module(target)
    if target_layer == FACADE:
        return ("nothing inside the package imports the facade `monitor`; "
                "import the module that defines the name")
    if target_layer == "cli" and source_layer not in ("cli", ENTRY):
        return "only monitor/__main__.py and monitor/cli/ may import monitor.cli"
    if target_layer not in ALLOWED_TARGETS[source_layer]:
        allowed = ", ".join(sorted(ALLOWED_TARGETS[source_layer]))
        return f"a {source_layer} module may import only {allowed} (not {target_layer})"
    return None


def violations() -> list[tuple[Import, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source_layer = layer_of_file(path)
        for imp in monitor_imports(path):
            rule = may_import(source_layer, imp.file, imp.module)
            if rule:
                found.append((imp, rule))
    return found


def test_every_module_keeps_the_import_rule() -> None:
    broken = [(imp, rule) for imp, rule in violations()
              if (imp.file, imp.module) not in ALLOWED_FOR_NOW]
    assert not broken, "the import rule (tests/test_import_rule.py) is broken:\n" + "\n".join(
        f"  {imp}\n      {rule}" for imp, rule in broken)


def test_the_allowlist_only_names_live_violations() -> None:
    live = {(imp.file, imp.module) for imp, _ in violations()}
    stale = [f"  {file} → {module}: {reason}" for (file, module), reason in ALLOWED_FOR_NOW.items()
             if (file, module) not in live]
    assert not stale, "fixed, so remove from ALLOWED_FOR_NOW:\n" + "\n".join(stale)


# --- the checker itself --------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target", "broken"), [
    ("base", "monitor.errors", False),
    ("base", "monitor.ingest.fetch", True),
    ("stage", "monitor.rules.ruleset", False),
    ("stage", "monitor.storage", True),
    ("stage", "monitor.runtime.pipeline", True),
    ("storage", "monitor.records", False),
    ("storage", "monitor.delivery.render", True),
    ("runtime", "monitor.storage.db", False),
    ("runtime", "monitor.cli.common", True),
    ("cli", "monitor.runtime.daemon", False),
    ("cli", "monitor.web.app", False),
    ("web", "monitor.storage.search", False),
    ("web", "monitor.cli.common", True),
    ("runtime", "monitor.web.app", True),
    ("cli", "monitor", True),
    (FACADE, "monitor.runtime.daemon", False),
    (FACADE, "monitor.cli", True),
    (ENTRY, "monitor.cli.app", False),
])
def test_the_rule_table(source: str, target: str, broken: bool) -> None:
    assert (may_import(source, "x.py", target) is not None) is broken


def test_imports_are_found_wherever_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "monitor"
    (package / "ingest").mkdir(parents=True)
    (package / "errors.py").write_text("")
    (package / "ingest" / "__init__.py").write_text("")
    module = package / "ingest" / "thing.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import monitor.storage.db\n"
        "from monitor import errors, load_config\n"
        "from . import fetch\n"
        "from ..runtime import daemon\n"
        "if TYPE_CHECKING:\n"
        "    from monitor.cli.common import State\n"
        "def later():\n"
        "    from monitor.storage import open_storage\n"
    )
    monkeypatch.setattr(f"{__name__}.PACKAGE", package)
    found = [(i.line, i.module) for i in monitor_imports(module)]
    assert found == [
        (2, "monitor.storage.db"), (3, "monitor"), (3, "monitor.errors"),
        (4, "monitor.ingest"), (5, "monitor.runtime"), (7, "monitor.cli.common"), (9, "monitor.storage"),
    ]
    last = "monitor/ingest/thing.py:9: from monitor.storage import open_storage"
    assert str(monitor_imports(module)[-1]) == last
