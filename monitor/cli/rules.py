"""Rule commands: ``test-rule``, ``classify`` and ``eval``.

``register(cli)`` adds them to the main ``newsmon`` group. Each command finds
its rules from ``--rules PATH`` (files or folders, repeatable) or else from the
config (``--config``, the group's ``--config``, ``$NEWSMON_CONFIG``, then
``config/newsmon.yaml``): its ``rules:`` list and ``analysis.spacy_model``.

Exit codes (all three commands):
  0  ran; for test-rule, a topic fired
  1  ran, but: test-rule: no topic fired; classify/eval: some input lines were
     bad (reported, skipped); eval: an F1 is under --fail-under
  2  usage or configuration error (bad option, rule file, missing input)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from monitor.cli.common import CONFIG_HELP, Progress, fail, is_terminal
from monitor.models import Article
from monitor.yamlfile import ConfigErrors

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_RULES_HELP = "Rule file or folder (repeatable). Default: the config's rules: list."


def register(cli: click.Group) -> None:
    """Add the rule commands to the ``newsmon`` group."""
    cli.add_command(test_rule)
    cli.add_command(classify)
    cli.add_command(eval_command)


# --- shared helpers -----------------------------------------------------------------


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    fail(message, code)


def _config_path(ctx: click.Context, explicit: str | None) -> str | None:
    if explicit:
        return explicit
    # The main group's State carries its own --config, if one was given there.
    return getattr(ctx.obj, "config_path", None)


def _load_classifier(ctx: click.Context, rules: tuple[str, ...], config: str | None,
                     spacy_model: str | None) -> Any:
    """Build the Classifier from --rules, or from the config; exit 2 on any error."""
    from monitor.rules.classifier import Classifier
    from monitor.rules.ruleset import load_rules

    paths: list[Path] = [Path(r) for r in rules]
    model = spacy_model
    if not paths:
        from monitor.config import load_config, resolve_config_path

        cfg_path = resolve_config_path(_config_path(ctx, config))
        try:
            cfg = load_config(cfg_path)
        except ConfigErrors as exc:
            for error in exc.errors:
                click.echo(f"error: {error}", err=True)
            click.echo("hint: pass --rules PATH to use rule files without a config", err=True)
            sys.exit(EXIT_USAGE)
        paths = cfg.rule_files()
        model = model or cfg.analysis.spacy_model
        if not paths:
            _fail(f"{cfg_path}: rules: names no rule files")
    try:
        ruleset = load_rules(paths)
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_USAGE)
    from monitor.analysis.analyser import Analyser

    return Classifier(ruleset, Analyser(model))


def _rules_options(func: Any) -> Any:
    func = click.option("--spacy-model", default=None,
                        help="Trained spaCy pipeline to use if installed (adds NER).")(func)
    func = click.option("--config", "-c", "config", type=click.Path(dir_okay=False),
                        default=None, help=CONFIG_HELP)(func)
    return click.option("--rules", "-r", "rules", multiple=True, type=click.Path(exists=True),
                        help=_RULES_HELP)(func)


def _parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def article_from_record(rec: dict[str, Any]) -> Article:
    """A JSON line (``title``, ``text``; optional ``summary``, ``tags``, ``language``,
    ``date``/``published``, ``url``) → Article."""
    text = rec.get("text", rec.get("body", ""))
    title = rec.get("title") or ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise ValueError("'title' and 'text' must be strings")
    tags = rec.get("tags", rec.get("feed_tags", ())) or ()
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
        raise ValueError("'tags' must be a list of strings")
    summary = rec.get("summary") or ""
    language = rec.get("language")
    url = rec.get("url") or None
    return Article(
        title=title, summary=summary if isinstance(summary, str) else "", body=text,
        text_source="page", url=url if isinstance(url, str) else None, feed_tags=tuple(tags),
        language=language if isinstance(language, str) else None,
        published=_parse_date(rec.get("published", rec.get("date"))),
    )


@dataclass(slots=True)
class _Line:
    number: int
    record: dict[str, Any] | None
    error: str | None = None


def _read_jsonl(path: Path) -> Iterator[_Line]:
    """Each non-empty line as a dict with an ``id``, or an error naming the line."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield _Line(number, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(rec, dict):
                yield _Line(number, None, "a line must be a JSON object")
            elif "id" not in rec or not isinstance(rec["id"], str | int):
                yield _Line(number, None, "missing 'id' (string or number)")
            else:
                yield _Line(number, rec)


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


# --- test-rule ---------------------------------------------------------------------


def _fetch_text(url: str, ctx: click.Context, config: str | None) -> tuple[str, str]:
    """Fetch a page with newsmon's own fetcher (egress guard, byte cap) and extract it."""
    import asyncio

    try:
        from monitor.analysis.extract import extract_page
        from monitor.config import Config, load_config, resolve_config_path
        from monitor.runtime.pipeline import Pipeline
    except ImportError as exc:  # the fetch stage is not installed in this checkout
        _fail(f"--url needs the fetch stage ({exc}); use --file or --text")
        raise  # unreachable
    path = resolve_config_path(_config_path(ctx, config))
    try:
        cfg = load_config(path) if path.exists() else Config()
    except ConfigErrors as exc:
        _fail(str(exc))
        raise

    async def get() -> bytes:
        fetcher = Pipeline.make_fetcher(cfg)
        try:
            result = await fetcher.fetch(url, kind="page", max_bytes=cfg.fetch.max_page_bytes)
        finally:
            await fetcher.aclose()
        return result.content

    try:
        html = asyncio.run(get())
    except Exception as exc:  # any fetch failure is the user's to see, not a traceback
        _fail(f"cannot fetch {url}: {exc}", EXIT_FAILED)
        raise
    page = extract_page(html, url)
    if page is None or not page.text.strip():
        _fail(f"no article text found at {url}", EXIT_FAILED)
    assert page is not None
    return page.title or "", page.text


def _read_file(path: Path) -> tuple[str, str]:
    """A .html page (extracted with trafilatura) or a plain-text file."""
    data = path.read_bytes()
    if path.suffix.lower() in (".html", ".htm"):
        import trafilatura

        text = trafilatura.extract(data, include_comments=False) or ""
        meta = trafilatura.extract_metadata(data)
        title = (meta.title if meta is not None else None) or ""
        if not text.strip():
            _fail(f"{path}: no article text found in the page", EXIT_FAILED)
        return title, text
    return "", data.decode("utf-8", errors="replace")


@click.command("test-rule")
@click.option("--topic", "-t", default=None, help="Only this topic (default: every topic).")
@click.option("--url", default=None, help="Fetch and extract this article page.")
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="An article as .html (extracted) or .txt.")
@click.option("--text", default=None, help="The article text itself.")
@click.option("--title", default="", help="A headline to go with --file/--text.")
@_rules_options
@click.pass_context
def test_rule(ctx: click.Context, topic: str | None, url: str | None, file_: Path | None,
              text: str | None, title: str, rules: tuple[str, ...], config: str | None,
              spacy_model: str | None) -> None:
    """Run the rules on one article and explain every topic's score.

    Shows the score against the threshold, each term that fired (where, how
    many times, how many points), the best evidence sentences with the terms
    marked **like this**, and why a topic did not fire.

    \b
    Examples:
      newsmon test-rule --text "Kremlin rejects peace talks"
      newsmon test-rule --file article.html --topic ceasefire
      newsmon test-rule --url https://example.org/story --rules config/rules/

    Exit codes: 0 a topic fired, 1 none fired (or the page could not be
    fetched), 2 usage or config error.
    """
    given = [x for x in (url, file_, text) if x]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --url, --file or --text")
    clf = _load_classifier(ctx, rules, config, spacy_model)
    if topic is not None and topic not in {t.id for t in clf.topics}:
        _fail(f"unknown topic {topic!r} (topics: {', '.join(t.id for t in clf.topics)})")
    if url:
        page_title, body = _fetch_text(url, ctx, config)
        title = title or page_title
    elif file_ is not None:
        page_title, body = _read_file(file_)
        title = title or page_title
    else:
        body = text or ""
    article = Article(title=title, summary="", body=body, text_source="page", url=url)
    explanations = clf.explain(article, topic=topic)
    click.echo(f"analyser: {clf.analyser.describe()}")
    for exp in explanations:
        click.echo("")
        click.echo(exp.format())
    sys.exit(EXIT_OK if any(e.fired for e in explanations) else EXIT_FAILED)


# --- classify ----------------------------------------------------------------------


@click.command("classify")
@click.option("--input", "-i", "input_", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON lines: id, title, text (summary, tags, language, date optional).")
@click.option("--output", "-o", required=True,
              type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="JSON lines written: id, topics (fired), scores (every topic);"
                   " - for standard output.")
@_rules_options
@click.pass_context
def classify(ctx: click.Context, input_: Path, output: Path, rules: tuple[str, ...],
             config: str | None, spacy_model: str | None) -> None:
    """Classify every article of a JSON-lines file.

    Each output line is {"id": ..., "topics": [fired topic ids], "scores":
    {topic: score}}. A bad input line is reported (FILE:LINE: why) and
    skipped; the other lines are still classified and written. A progress
    bar runs on stderr when it is a terminal; the summary goes to stderr.

    \b
    Examples:
      newsmon classify --input articles.jsonl --output results.jsonl
      newsmon classify -i articles.jsonl -o - | jq -c 'select(.topics != [])'
      newsmon classify -i articles.jsonl -o out.jsonl --rules config/rules/

    Exit codes: 0 all lines classified, 1 some lines were bad, 2 usage or
    config error (missing input, bad rules, unwritable output).
    """
    to_stdout = str(output) == "-"
    if not to_stdout and output.resolve() == input_.resolve():
        _fail(f"{output}: the output would overwrite the input")
    clf = _load_classifier(ctx, rules, config, spacy_model)
    bad = done = 0
    with Progress(_count_lines(input_), "classifying") as progress:
        try:
            with (_stdout_sink() if to_stdout else output.open("w", encoding="utf-8")) as out:
                for line in _read_jsonl(input_):
                    result, error = _classify_line(clf, line)
                    progress.advance()
                    if error:
                        bad += 1
                        progress.echo(f"error: {input_}:{line.number}: {error}")
                        continue
                    out.write(json.dumps(result, ensure_ascii=False) + "\n")
                    done += 1
        except OSError as exc:
            _fail(f"{output}: {exc.strerror or exc}")
    click.echo(f"{done} articles classified, {bad} bad lines → "
               f"{'standard output' if to_stdout else output}", err=True)
    sys.exit(EXIT_FAILED if bad else EXIT_OK)


class _stdout_sink:
    """Standard output as a context manager that is flushed, not closed."""

    def __enter__(self) -> Any:
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


def _classify_line(clf: Any, line: _Line) -> tuple[dict[str, Any] | None, str | None]:
    if line.record is None:
        return None, line.error
    try:
        article = article_from_record(line.record)
    except ValueError as exc:
        return None, str(exc)
    exps = clf.explain(article)
    return {
        "id": line.record["id"],
        "topics": [e.topic for e in exps if e.fired],
        "scores": {e.topic: e.score for e in exps},
    }, None


# --- eval --------------------------------------------------------------------------


@dataclass(slots=True)
class TopicScore:
    topic: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    false_positives: list[str] = field(default_factory=list)
    false_negatives: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic, "precision": round(self.precision, 4),
            "recall": round(self.recall, 4), "f1": round(self.f1, 4),
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
            "false_positives": self.false_positives, "false_negatives": self.false_negatives,
        }


def evaluate(clf: Any, lines: Iterator[_Line], on_line: Any = None) -> tuple[
    dict[str, TopicScore], list[tuple[int, str]]
]:
    """Score the classifier against each line's ``labels`` ({topic: 0/1})."""
    scores: dict[str, TopicScore] = {t.id: TopicScore(t.id) for t in clf.topics}
    bad: list[tuple[int, str]] = []
    for line in lines:
        if on_line:
            on_line()
        rec = line.record
        if rec is None:
            bad.append((line.number, line.error or "bad line"))
            continue
        labels = rec.get("labels")
        if not isinstance(labels, dict):
            bad.append((line.number, "missing 'labels' ({topic: 0/1})"))
            continue
        try:
            article = article_from_record(rec)
        except ValueError as exc:
            bad.append((line.number, str(exc)))
            continue
        fired = {m.topic for m in clf.classify(article)}
        for topic, sc in scores.items():
            if topic not in labels:
                continue
            gold, got = bool(labels[topic]), topic in fired
            if gold and got:
                sc.tp += 1
            elif got:
                sc.fp += 1
                sc.false_positives.append(str(rec["id"]))
            elif gold:
                sc.fn += 1
                sc.false_negatives.append(str(rec["id"]))
            else:
                sc.tn += 1
    return scores, bad


def _print_table(scores: dict[str, TopicScore]) -> None:
    if is_terminal(sys.stdout):
        from rich.console import Console
        from rich.table import Table

        table = Table(title="rule evaluation")
        for col in ("topic", "P", "R", "F1", "TP", "FP", "FN", "TN"):
            table.add_column(col, justify="left" if col == "topic" else "right")
        for s in scores.values():
            table.add_row(s.topic, f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}",
                          str(s.tp), str(s.fp), str(s.fn), str(s.tn))
        Console().print(table)
    else:
        click.echo(f"{'topic':<16} {'P':>6} {'R':>6} {'F1':>6} {'TP':>4} {'FP':>4} {'FN':>4} "
                   f"{'TN':>4}")
        for s in scores.values():
            click.echo(f"{s.topic:<16} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f} "
                       f"{s.tp:4d} {s.fp:4d} {s.fn:4d} {s.tn:4d}")
    for s in scores.values():
        click.echo(f"{s.topic} false positives: {' '.join(s.false_positives) or '-'}")
        click.echo(f"{s.topic} false negatives: {' '.join(s.false_negatives) or '-'}")


@click.command("eval")
@click.option("--input", "-i", "input_", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Labelled JSON lines: id, title, text, labels {topic: 0/1}.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--fail-under", type=click.FloatRange(0, 1), default=None,
              help="Exit 1 if any topic's F1 is below this.")
@_rules_options
@click.pass_context
def eval_command(ctx: click.Context, input_: Path, as_json: bool, fail_under: float | None,
                 rules: tuple[str, ...], config: str | None, spacy_model: str | None) -> None:
    """Measure the rules against labelled articles.

    Per topic: precision, recall, F1, TP/FP/FN/TN and the ids of false
    positives and false negatives. Topics without labels in the file are
    counted as nothing. A table on a terminal, aligned plain text when piped,
    or --json; a progress bar runs on stderr when it is a terminal.

    \b
    Examples:
      newsmon eval --input ../shared/eval/dev.jsonl
      newsmon eval -i labelled.jsonl --json | jq '.topics[] | {topic, f1}'
      newsmon eval -i labelled.jsonl --fail-under 0.8     # gate a rule change in CI

    Exit codes: 0 evaluated every line; 1 evaluated, but some lines were bad
    or an F1 is under --fail-under; 2 usage or config error.
    """
    clf = _load_classifier(ctx, rules, config, spacy_model)
    with Progress(_count_lines(input_), "evaluating") as progress:
        scores, bad = evaluate(clf, _read_jsonl(input_), progress.advance)
    for number, error in bad:
        click.echo(f"error: {input_}:{number}: {error}", err=True)
    if as_json:
        click.echo(json.dumps({"topics": [s.as_dict() for s in scores.values()],
                               "bad_lines": len(bad)}, indent=2))
    else:
        _print_table(scores)
    low = [s.topic for s in scores.values() if fail_under is not None and s.f1 < fail_under]
    if low:
        click.echo(f"F1 under {fail_under}: {', '.join(low)}", err=True)
    sys.exit(EXIT_FAILED if bad or low else EXIT_OK)
