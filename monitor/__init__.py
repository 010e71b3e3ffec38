"""newsmon: a news-monitoring daemon, and the library it is built from.

Stages, one package each: ingest (fetch, parse) → analysis (extract, analyse) →
rules (match) → storage → delivery. See docs/architecture.md. The public API is
this module; everything else may change between releases::

    import asyncio
    import monitor

    config = monitor.load_config("config/newsmon.yaml")      # raises monitor.ConfigErrors
    classifier = monitor.build_classifier(config.rule_files(),
                                          spacy_model=config.analysis.spacy_model)
    storage = monitor.open_storage(config)  # the SQLite file or postgresql:// URL it names
    cycle, delivery = asyncio.run(monitor.run_once(config))  # poll, match, deliver once

Every error newsmon raises is a ``monitor.NewsmonError`` (``monitor.errors``
has the tree). ``import monitor`` is cheap: each name is imported on first use
(spaCy, aiohttp and pydantic take a second or more between them).
"""

from __future__ import annotations

import importlib
import os  # already loaded by the interpreter: free

# typing costs an import at start-up; a plain False is what type checkers read as typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from monitor.config import Config, load_config
    from monitor.errors import (
        ConfigError,
        ConfigErrors,
        DeliveryError,
        FeedParseError,
        FetchError,
        MissingDependencyError,
        NewsmonError,
        OpmlError,
        StageError,
        StorageError,
        TemplateProblem,
    )
    from monitor.models import (
        Article,
        EvidenceSentence,
        FeedItem,
        FetchResult,
        ParsedFeed,
        PendingAlert,
        ProcessedArticle,
        TopicMatch,
    )
    from monitor.rules.classifier import Classifier
    from monitor.runtime.assembly import run_once
    from monitor.storage import Storage, open_storage

__version__ = "0.1.0"

__all__ = [
    "Article",
    "Classifier",
    "Config",
    "ConfigError",
    "ConfigErrors",
    "DeliveryError",
    "EvidenceSentence",
    "FeedItem",
    "FeedParseError",
    "FetchError",
    "FetchResult",
    "MissingDependencyError",
    "NewsmonError",
    "OpmlError",
    "ParsedFeed",
    "PendingAlert",
    "ProcessedArticle",
    "StageError",
    "Storage",
    "StorageError",
    "TemplateProblem",
    "TopicMatch",
    "__version__",
    "build_classifier",
    "load_config",
    "open_storage",
    "run_once",
]

# Public name → the module that defines it, imported on first access.
_LAZY: dict[str, str] = {
    "Config": "monitor.config",
    "load_config": "monitor.config",
    "Storage": "monitor.storage",
    "open_storage": "monitor.storage",
    "Classifier": "monitor.rules.classifier",
    "run_once": "monitor.runtime.assembly",
    **dict.fromkeys(
        ("Article", "EvidenceSentence", "FeedItem", "FetchResult", "ParsedFeed", "PendingAlert",
         "ProcessedArticle", "TopicMatch"),
        "monitor.models",
    ),
    **dict.fromkeys(
        ("ConfigError", "ConfigErrors", "DeliveryError", "FeedParseError", "FetchError",
         "MissingDependencyError", "NewsmonError", "OpmlError", "StageError", "StorageError",
         "TemplateProblem"),
        "monitor.errors",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'monitor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def build_classifier(rule_files: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], *,
                     spacy_model: str | None = None) -> Classifier:
    """Compile rule files (or folders of ``*.yaml``) into a ``Classifier``.

    ``spacy_model`` names a trained spaCy pipeline to use when it is installed
    (it adds named entities); without it a blank English pipeline is used.
    Raises ``ConfigErrors`` listing every problem with its file, line and key.
    """
    from pathlib import Path

    from monitor.rules.classifier import Classifier

    # One file or folder, or a list of them.
    paths = [Path(rule_files)] if isinstance(rule_files, str | os.PathLike) else [Path(p) for p in rule_files]
    return Classifier.from_files(paths, spacy_model=spacy_model)
