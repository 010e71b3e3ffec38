"""``newsmon backtest``: a rule set re-run over stored articles, per topic added /
removed / unchanged against what was matched when they arrived."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli.app import cli
from monitor.cli.web import compare
from monitor.config import Config
from tests.helpers.configs import RULES
from tests.helpers.servers import Site
from tests.helpers.web import fill


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    with Site() as site:
        yield fill(tmp_path_factory.mktemp("backtest"), site)


def test_compare_sorts_added_removed_unchanged() -> None:
    a, b, c = ({"id": n} for n in (1, 2, 3))
    diffs = compare([(a, {"x"}, {"x"}), (b, {"x", "y"}, set()), (c, set(), {"y"})], ["x", "y"])
    assert diffs["x"].unchanged == [a] and diffs["x"].added == [b] and diffs["x"].removed == []
    assert diffs["y"].added == [b] and diffs["y"].removed == [c]


def test_the_same_rules_change_nothing(filled: Config) -> None:
    result = CliRunner().invoke(cli, ["backtest", "--rules", str(RULES), "--json",
                                      "--config", str(filled.source)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["articles"] >= 5
    counts = {t: d["counts"] for t, d in report["topics"].items()}
    assert all(c["added"] == 0 and c["removed"] == 0 for c in counts.values()), counts
    assert counts["ceasefire"]["unchanged"] >= 2


def test_the_text_report_and_a_bad_rules_path(filled: Config, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["backtest", "--rules", str(RULES), "--since", "30d",
                                      "--config", str(filled.source)])
    assert result.exit_code == 0 and "ceasefire: +0 added, -0 removed" in result.output
    assert "stored articles since" in result.output
    bad = CliRunner().invoke(cli, ["backtest", "--rules", str(tmp_path / "missing"),
                                   "--config", str(filled.source)])
    assert bad.exit_code == 2
