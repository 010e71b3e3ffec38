"""The public API (``monitor/__init__.py``) and the error tree (``monitor/errors.py``).

``EXPECTED_API`` is the contract: adding or removing a public name is a
deliberate edit here, never a side effect.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import monitor
from monitor import errors
from monitor._optional import is_available, require

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_API = [
    # configuration
    "Config", "load_config",
    # the database
    "Storage", "open_storage",
    # rules
    "Classifier", "build_classifier",
    # one poll-match-deliver cycle
    "run_once",
    # the values passed between stages
    "Article", "EvidenceSentence", "FeedItem", "FetchResult", "ParsedFeed", "PendingAlert",
    "ProcessedArticle", "TopicMatch",
    # the errors
    "NewsmonError", "ConfigError", "ConfigErrors", "StageError", "FetchError", "FeedParseError",
    "OpmlError", "StorageError", "DeliveryError", "TemplateProblem", "MissingDependencyError",
    "__version__",
]

# Exceptions that are not newsmon errors on purpose, with why.
NOT_NEWSMON_ERRORS = {
    "monitor.cli.common._OneLineError": "a click exception: click prints it and exits",
}


def test_all_is_exactly_the_expected_api() -> None:
    assert sorted(monitor.__all__) == sorted(EXPECTED_API)
    assert len(monitor.__all__) == len(set(monitor.__all__))


@pytest.mark.parametrize("name", EXPECTED_API)
def test_each_public_name_resolves_and_is_documented(name: str) -> None:
    value = getattr(monitor, name)
    if name == "__version__":
        return  # a string; test_version_matches_the_package checks it
    doc = value.__doc__ or ""
    # A dataclass without a docstring gets its signature as __doc__: that is not documentation.
    assert doc.strip() and not doc.startswith(f"{name}("), f"monitor.{name} has no docstring"


def test_star_import_gives_the_api() -> None:
    namespace: dict[str, object] = {}
    exec("from monitor import *", namespace)
    assert set(EXPECTED_API) <= set(namespace)


def test_version_matches_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert monitor.__version__ == project["version"]


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        monitor.no_such_thing  # noqa: B018


def test_import_monitor_is_cheap() -> None:
    # Run in a fresh interpreter: this one has imported everything already.
    code = ("import sys, monitor\n"
            "print(','.join(sorted(m for m in sys.modules if m.startswith('monitor'))))\n"
            "print(','.join(sorted(m for m in ('spacy', 'aiohttp', 'pydantic', 'apprise', 'sqlite_utils')"
            " if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.splitlines()
    assert out == ["monitor", ""], "import monitor loaded more than itself"


def test_build_classifier_takes_one_path_or_several(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("topics:\n  - id: floods\n    threshold: 1\n    terms: [flood]\n", encoding="utf-8")
    for given in (rules, str(rules), [rules], tmp_path):
        classifier = monitor.build_classifier(given)
        assert [t.id for t in classifier.topics] == ["floods"]
    rules.write_text("topics: [{id: floods, no_such_key: 1}]\n", encoding="utf-8")
    with pytest.raises(monitor.ConfigErrors, match=r"rules\.yaml"):
        monitor.build_classifier(rules)


# --- the error tree ------------------------------------------------------------------------


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in ``monitor`` (found with ast, then imported)."""
    found: dict[str, type[BaseException]] = {}
    for path in sorted((ROOT / "monitor").rglob("*.py")):
        if path.name == "__main__.py":
            continue  # running it is the CLI
        module_name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        class_names = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        if not class_names:
            continue
        module = importlib.import_module(module_name)
        for name in class_names:
            value = getattr(module, name, None)
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == module_name):
                found[f"{module_name}.{name}"] = value
    return found


def test_every_error_is_a_newsmon_error() -> None:
    classes = _exception_classes()
    assert "monitor.errors.ConfigError" in classes  # the scan works
    outside = [name for name, cls in classes.items()
               if not issubclass(cls, errors.NewsmonError) and name not in NOT_NEWSMON_ERRORS]
    assert not outside, f"not under NewsmonError (base them on a branch of monitor.errors): {outside}"


@pytest.mark.parametrize(("old_home", "name", "branch"), [
    ("monitor.yamlfile", "ConfigError", errors.NewsmonError),
    ("monitor.yamlfile", "ConfigErrors", errors.ConfigError),
    ("monitor.models", "StageError", errors.NewsmonError),
    ("monitor.models", "FetchError", errors.StageError),
    ("monitor.ingest.parse", "FeedParseError", errors.StageError),
    ("monitor.ingest.opml", "OpmlError", errors.NewsmonError),
    ("monitor.storage", "StoreError", errors.StorageError),
    ("monitor.delivery.deliverer", "ChannelError", errors.DeliveryError),
    ("monitor.delivery.render", "TemplateProblem", errors.DeliveryError),
])
def test_errors_stay_importable_where_they_were(old_home: str, name: str, branch: type) -> None:
    cls = getattr(importlib.import_module(old_home), name)
    assert issubclass(cls, branch)
    if hasattr(errors, name):
        assert cls is getattr(errors, name)  # one class, not a copy


def test_template_problem_is_still_a_value_error() -> None:
    assert issubclass(errors.TemplateProblem, ValueError)


def test_config_errors_are_config_errors_with_every_location() -> None:
    first = errors.ConfigError("bad value", path="a.yaml", line=3, col=5, key="feeds")
    many = errors.ConfigErrors([first, errors.ConfigError("missing")])
    assert str(first) == "a.yaml:3:5: [feeds] bad value"
    assert str(many) == "a.yaml:3:5: [feeds] bad value\n<config>: missing"
    assert isinstance(many, errors.ConfigError) and many.errors[0] is first


@pytest.mark.parametrize("error", [
    errors.ConfigError("bad value", path="a.yaml", line=3, col=5, key="feeds"),
    errors.ConfigErrors([errors.ConfigError("x", path="b.yaml", line=1)]),
    errors.FetchError("https://example.org/: 503", kind="http_status", status=503, retry_after=30.0),
    errors.FeedParseError("https://example.org/: not a feed"),
    errors.MissingDependencyError("no", module="en_core_web_sm", extra="ner"),
], ids=lambda e: type(e).__name__)
def test_errors_cross_the_worker_pool_intact(error: errors.NewsmonError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert _state(copy) == _state(error)
    assert str(copy) == str(error) and getattr(copy, "kind", None) == getattr(error, "kind", None)
    assert getattr(copy, "name", None) == getattr(error, "name", None)  # ImportError's own field


def _state(value: object) -> object:
    """What an error holds, comparable with ==: class, args and attributes, nested errors too."""
    if isinstance(value, BaseException):
        return (type(value), value.args, {k: _state(v) for k, v in vars(value).items()})
    if isinstance(value, list):
        return [_state(v) for v in value]
    return value


# --- optional dependencies --------------------------------------------------------------------


def test_require_returns_an_installed_module() -> None:
    assert require("json") is sys.modules["json"]
    assert is_available("json")


def test_require_names_the_extra_of_a_missing_module() -> None:
    with pytest.raises(errors.MissingDependencyError, match=r"pip install 'newsmon\[ner\]'") as caught:
        require("newsmon_no_such_module.sub", extra="ner", purpose="named entities")
    assert isinstance(caught.value, ImportError)  # `except ImportError` fallbacks keep working
    assert caught.value.extra == "ner" and "named entities" in str(caught.value)
    assert not is_available("newsmon_no_such_module")


def test_require_lets_a_broken_installed_module_fail_loudly(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "newsmon_broken_module.py").write_text("import newsmon_its_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        require("newsmon_broken_module", extra="x")
    assert not isinstance(caught.value, errors.MissingDependencyError)
