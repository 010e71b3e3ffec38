"""Extract → analyse → match for one item, in a worker process.

These three stages are CPU-bound (about 25 ms a page), so they run in a pool of
processes, one per core, while fetching stays concurrent I/O in the event loop.
Each worker builds its ``Classifier`` once, in the pool initializer; the
per-process instance below is the only module state, and exists because a
process pool can hand a function nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from monitor.analysis.extract import build_article
from monitor.models import ArticleInput, ProcessedArticle
from monitor.rules.classifier import Classifier

_classifier: Classifier | None = None  # one per worker process (see module doc)


def init_worker(rule_files: Sequence[Path], spacy_model: str | None) -> None:
    global _classifier
    _classifier = Classifier.from_files(list(rule_files), spacy_model=spacy_model)


def process_in_worker(source: ArticleInput) -> ProcessedArticle:
    if _classifier is None:
        raise RuntimeError("worker used before init_worker")
    return process_article(source, _classifier)


def process_article(source: ArticleInput, classifier: Classifier) -> ProcessedArticle:
    """Extract the article text (or fall back to the summary) and match it."""
    started = time.perf_counter()
    article, page_error = build_article(source)
    extracted = time.perf_counter()
    matches = classifier.classify(article)
    done = time.perf_counter()
    return ProcessedArticle(
        item=source.item, article=article, matches=tuple(matches), page_error=page_error,
        timings={"extract": extracted - started, "analyse_match": done - extracted},
    )
