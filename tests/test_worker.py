"""The worker's per-article stages: built from config in order, run in order, timed."""

from __future__ import annotations

import asyncio
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from monitor.config import AnalysisSettings, Config
from monitor.models import ArticleInput, FeedItem
from monitor.runtime import worker
from monitor.runtime.processor import ArticleProcessor
from monitor.runtime.worker import (
    AnalyseAndMatch,
    ArticleState,
    Extract,
    WorkerSettings,
    build_stages,
    init_worker,
    process_in_worker,
    run_stages,
)
from tests.helpers.rules import one_topic, write_rules
from tests.helpers.servers import article_html

PARAGRAPHS = ["Both sides agreed a truce on Tuesday after weeks of fighting in the region.",
              "Officials said the truce would hold while negotiators meet again next week."]


def source(html: bytes | None = None) -> ArticleInput:
    item = FeedItem(guid="g", link="https://x.example/a", canonical_url="https://x.example/a",
                    title="Truce agreed", summary="A truce was agreed.", published=None,
                    language="en-GB")
    return ArticleInput(item=item, feed_url="https://x.example/feed", feed_tags=("world",), html=html)


@pytest.fixture
def settings(tmp_path: Path) -> WorkerSettings:
    config = Config(database=tmp_path / "t.db", rules=(write_rules(tmp_path, one_topic("[truce]")),),
                    analysis=AnalysisSettings(workers=0, spacy_model="no_such_pipeline_xyz"))
    return WorkerSettings.from_config(config)


def test_settings_come_from_the_config_and_pickle(settings: WorkerSettings, tmp_path: Path) -> None:
    assert settings.rule_files == (tmp_path / "rules.yaml",)
    assert settings.spacy_model == "no_such_pipeline_xyz"
    assert pickle.loads(pickle.dumps(settings)) == settings  # they cross to the worker pool


def test_the_stages_are_extract_then_analyse_and_match(settings: WorkerSettings) -> None:
    stages = build_stages(settings)
    assert [s.name for s in stages] == ["extract", "analyse_match", "story"]
    assert isinstance(stages[0], Extract) and isinstance(stages[1], AnalyseAndMatch)
    classifier = stages[1].classifier
    assert classifier.analyser.support.model == "no_such_pipeline_xyz"  # the config's pipeline


def test_an_article_goes_through_the_stages(settings: WorkerSettings) -> None:
    result = run_stages(source(article_html("Truce", PARAGRAPHS)), build_stages(settings))
    assert result.article.text_source == "page"
    assert result.article.language == "en"  # <html lang='en'>
    assert result.article.feed_tags == ("world",)
    assert [(m.topic, m.language) for m in result.matches] == [("t", "en")]
    assert result.page_error is None
    assert list(result.timings) == ["extract", "analyse_match", "story"]
    assert all(seconds >= 0 for seconds in result.timings.values())

    fallback = run_stages(source(b"<html><body>junk</body></html>"), build_stages(settings))
    assert fallback.article.text_source == "summary"
    assert fallback.page_error == "page text too short (4 characters)"
    assert [m.topic for m in fallback.matches] == ["t"]


@dataclass(frozen=True)
class Recording:
    """A stage that notes when it ran and what it was handed."""

    name: str
    log: list[tuple[str, ArticleState]]

    def __call__(self, state: ArticleState, /) -> ArticleState:
        self.log.append((self.name, state))
        return state


def test_stages_run_in_list_order_each_on_the_previous_state(settings: WorkerSettings) -> None:
    log: list[tuple[str, ArticleState]] = []
    extract, match, _story = build_stages(settings)
    stages = [Recording("first", log), extract, Recording("middle", log), match,
              Recording("last", log)]
    result = run_stages(source(), stages)
    assert [name for name, _ in log] == ["first", "middle", "last"]
    first, middle, last = (state for _, state in log)
    assert first.article is None  # before extract
    assert middle.article is result.article and not middle.matches  # between the two
    assert last.matches == result.matches != ()
    assert list(result.timings) == ["first", "extract", "middle", "analyse_match", "last"]


def test_a_stage_that_needs_the_article_before_extract_says_so(settings: WorkerSettings) -> None:
    extract, match, _story = build_stages(settings)
    with pytest.raises(RuntimeError, match="stage 'analyse_match' needs the extract stage"):
        run_stages(source(), [match, extract])
    with pytest.raises(RuntimeError, match="needs the extract stage"):
        run_stages(source(), [])


def test_the_worker_process_entry_points(settings: WorkerSettings,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "_stages", None)
    with pytest.raises(RuntimeError, match="before init_worker"):
        process_in_worker(source())
    init_worker(settings)
    assert [m.topic for m in process_in_worker(source()).matches] == ["t"]


def test_the_in_process_article_processor_runs_the_stages(settings: WorkerSettings,
                                                           tmp_path: Path) -> None:
    config = Config(database=tmp_path / "t.db", rules=settings.rule_files,
                    analysis=AnalysisSettings(workers=0))
    processor = ArticleProcessor(config)
    assert processor.settings == replace(settings, spacy_model=None)
    [result] = asyncio.run(processor.process([source()]))
    assert [m.topic for m in result.matches] == ["t"]
    assert list(result.timings) == ["extract", "analyse_match", "story"]
