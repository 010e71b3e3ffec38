"""Rule commands: ``test-rule``, ``classify``, ``eval`` and ``train``.

``register(cli)`` adds them to the main ``newsmon`` group. Each command finds
its rules from ``--rules PATH`` (files or folders, repeatable) or else from the
config (``--config``, the group's ``--config``, ``$NEWSMON_CONFIG``, then
``config/newsmon.yaml``): its ``rules:`` list and ``analysis.spacy_model``.

Exit codes (all four commands; train: 1 when some input lines were bad):
  0  ran; for test-rule, a topic fired
  1  ran, but: test-rule: no topic fired; classify/eval: some input lines were
     bad (reported, skipped); eval: an F1 is under --fail-under
  2  usage or configuration error (bad option, rule file, missing input)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from monitor.cli.common import CONFIG_HELP, Progress, fail, is_terminal
from monitor.models import Article
from monitor.rules.evaluation import (
    JsonLine,
    TopicScore,
    article_from_record,
    count_lines,
    read_jsonl,
)
from monitor.yamlfile import ConfigErrors

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_RULES_HELP = "Rule file or folder (repeatable). Default: the config's rules: list."


def register(cli: click.Group) -> None:
    """Add the rule commands to the ``newsmon`` group."""
    cli.add_command(test_rule)
    cli.add_command(classify)
    cli.add_command(eval_command)
    cli.add_command(train_command)


# --- shared helpers -----------------------------------------------------------------


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    fail(message, code)


def _config_path(ctx: click.Context, explicit: str | None) -> str | None:
    if explicit:
        return explicit
    # The main group's State carries its own --config, if one was given there.
    return getattr(ctx.obj, "config_path", None)


def _load_classifier(ctx: click.Context, rules: tuple[str, ...], config: str | None,
                     spacy_model: str | None, *, learned: bool = True,
                     model_file: Path | None = None) -> Any:
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

    stage: Any = "auto" if learned else None
    if model_file is not None:
        from monitor.rules.learned import LearnedModel

        try:
            stage = LearnedModel.load(model_file)
        except ValueError as exc:
            _fail(str(exc))
    clf = Classifier(ruleset, Analyser(model), learned=stage)
    if model_file is not None:
        clf.learned_path = model_file
    return clf


def _rules_options(func: Any) -> Any:
    func = click.option("--spacy-model", default=None,
                        help="Trained spaCy pipeline to use if installed (adds NER).")(func)
    func = click.option("--config", "-c", "config", type=click.Path(dir_okay=False),
                        default=None, help=CONFIG_HELP)(func)
    return click.option("--rules", "-r", "rules", multiple=True, type=click.Path(exists=True),
                        help=_RULES_HELP)(func)


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
    """A .html page (extracted exactly as the daemon extracts pages) or a plain-text file."""
    from monitor.analysis.extract import extract_page

    data = path.read_bytes()
    if path.suffix.lower() in (".html", ".htm"):
        page = extract_page(data)
        if page is None or not page.text.strip():
            _fail(f"{path}: no article text found in the page", EXIT_FAILED)
        assert page is not None
        return page.title or "", page.text
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

    Says in words why a topic fired (where, what carried it, a threshold raised
    for length, the learned stage's verdict when a model is loaded); shows the
    score against the threshold, each term that fired (where, how many times,
    how many points), the best evidence sentences with the terms marked
    **like this**, and for a topic that did not fire what was missing and by
    how much ("3 war-context terms needed, found 1: kremlin").

    \b
    Examples:
      newsmon test-rule --title "Kremlin rejects Ukraine truce talks" --text "Moscow said no."
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
    if clf.learned_path is not None:
        click.echo(f"learned stage: {clf.learned_path}")
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
    with Progress(count_lines(input_), "classifying") as progress:
        try:
            with (_stdout_sink() if to_stdout else output.open("w", encoding="utf-8")) as out:
                for line in read_jsonl(input_):
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


def _classify_line(clf: Any, line: JsonLine) -> tuple[dict[str, Any] | None, str | None]:
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


def _print_table(scores: dict[str, TopicScore], title: str = "rule evaluation",
                 errors: bool = True) -> None:
    if is_terminal(sys.stdout):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for col in ("topic", "P", "R", "F1", "TP", "FP", "FN", "TN"):
            table.add_column(col, justify="left" if col == "topic" else "right")
        for s in scores.values():
            if not s.labelled:
                table.add_row(s.topic, "no labels", "", "", "", "", "", "")
                continue
            table.add_row(s.topic, f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}",
                          str(s.tp), str(s.fp), str(s.fn), str(s.tn))
        Console().print(table)
    else:
        if title != "rule evaluation":
            click.echo(f"{title}:")
        click.echo(f"{'topic':<16} {'P':>6} {'R':>6} {'F1':>6} {'TP':>4} {'FP':>4} {'FN':>4} "
                   f"{'TN':>4}")
        for s in scores.values():
            if not s.labelled:
                click.echo(f"{s.topic:<16} no labels")
                continue
            click.echo(f"{s.topic:<16} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f} "
                       f"{s.tp:4d} {s.fp:4d} {s.fn:4d} {s.tn:4d}")
    if not errors:
        return
    for s in scores.values():
        click.echo(f"{s.topic} false positives: {' '.join(s.false_positives) or '-'}")
        click.echo(f"{s.topic} false negatives: {' '.join(s.false_negatives) or '-'}")


_SYSTEM_TITLES = {"rules": "rules alone", "model": "learned model alone",
                  "both": "rules + learned stage"}


def _training_rows(clf: Any, inputs: tuple[Path, ...], bad: list[tuple[Path, int, str]],
                   embeddings: bool | None = None) -> list[Any]:
    """Every usable labelled line of ``inputs`` as the rules alone see it (with the
    articles' sentence embeddings where they can be computed, unless told not to)."""
    from monitor.rules.embedding import available
    from monitor.rules.evaluation import labelled_articles, training_rows

    if embeddings and not available():
        _fail("--embeddings needs the wordllama package: pip install 'newsmon[embeddings]'")
    embed = available() if embeddings is None else embeddings

    items = []
    for path in inputs:
        errors: list[tuple[int, str]] = []
        items += labelled_articles(read_jsonl(path), errors)
        bad += [(path, n, why) for n, why in errors]
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        _fail("the same article id appears twice in the inputs: ids must be unique across files")
    with Progress(len(items), "analysing") as progress:
        return training_rows(clf, items, progress.advance, embeddings=embed)


def _print_cv(rows: list[Any], topics: list[str], folds: int, seed: int | None,
              as_json: bool) -> dict[str, Any]:
    from monitor.rules.evaluation import cross_validate

    if len(rows) < folds * 2:
        _fail(f"--cv {folds} needs at least {folds * 2} labelled articles, got {len(rows)}")
    result = cross_validate(rows, topics, folds=folds, seed=seed)
    if not as_json:
        for system, ev in result.items():
            _print_table(ev.scores, f"{folds}-fold cross-validated: {_SYSTEM_TITLES[system]}",
                         errors=False)
    return {system: ev.as_dict()["topics"] for system, ev in result.items()}


@click.command("eval")
@click.option("--input", "-i", "input_", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Labelled JSON lines: id, title, text, labels {topic: 0/1}.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--fail-under", type=click.FloatRange(0, 1), default=None,
              help="Exit 1 if any topic's F1 is below this.")
@click.option("--no-model", is_flag=True,
              help="Rules alone, even when a learned model sits beside the rule pack.")
@click.option("--model", "model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Use this model file (e.g. a candidate from train --output).")
@click.option("--cv", "cv", type=click.IntRange(2, 20), default=None,
              help="Also print K-fold cross-validated figures of rules alone, the model "
                   "alone and both, training on this input's other folds.")
@_rules_options
@click.pass_context
def eval_command(ctx: click.Context, input_: Path, as_json: bool, fail_under: float | None,
                 no_model: bool, model_file: Path | None, cv: int | None, rules: tuple[str, ...],
                 config: str | None, spacy_model: str | None) -> None:
    """Measure the rules (and the learned stage) against labelled articles.

    Per topic: precision, recall, F1, TP/FP/FN/TN and the ids of false
    positives and false negatives. When a learned model sits beside the rule
    pack (see ``newsmon train``), a second table gives the figures with it;
    --fail-under gates the figures as deployed (with the model if present).
    Topics without labels in the file are reported as "no labels" and never
    fail. A table on a terminal, aligned plain text when piped, or --json; a
    progress bar runs on stderr when it is a terminal.

    \b
    Examples:
      newsmon eval --input ../shared/eval/dev.jsonl
      newsmon eval -i labelled.jsonl --json | jq '.topics[] | {topic, f1}'
      newsmon eval -i labelled.jsonl --fail-under 0.8     # gate a rule change in CI
      newsmon eval -i labelled.jsonl --cv 5               # rules / model / both, 5 folds
      newsmon eval -i dev.jsonl --model /tmp/candidate.model.json

    Exit codes: 0 evaluated every line; 1 evaluated, but some lines were bad
    or an F1 is under --fail-under; 2 usage or config error.
    """
    from monitor.rules.evaluation import evaluate_systems

    if no_model and model_file is not None:
        raise click.UsageError("--no-model and --model exclude each other")
    clf = _load_classifier(ctx, rules, config, spacy_model, learned=not no_model,
                           model_file=model_file)
    topics = [t.id for t in clf.topics]
    with Progress(count_lines(input_), "evaluating") as progress:
        systems = evaluate_systems(clf.judge, topics, read_jsonl(input_), progress.advance)
    deployed = systems.get("both", systems["rules"])
    bad = deployed.bad_lines
    for number, error in bad:
        click.echo(f"error: {input_}:{number}: {error}", err=True)
    out: dict[str, Any] = deployed.as_dict()
    if "both" in systems:
        out["rules_alone"] = systems["rules"].as_dict()["topics"]
        out["learned"] = {"model": str(clf.learned_path), **_model_summary(clf)}
    if not as_json:
        _print_table(systems["rules"].scores)
        if "both" in systems:
            click.echo(f"learned stage: {clf.learned_path}"
                       + ("" if _model_current(clf) else
                          " (trained on another version of the rule pack: run newsmon train)"))
            _print_table(systems["both"].scores, _SYSTEM_TITLES["both"])
    if cv is not None:
        bad_rows: list[tuple[Path, int, str]] = []
        rules_only = _load_classifier(ctx, rules, config, spacy_model, learned=False)
        out["cross_validated"] = _print_cv(_training_rows(rules_only, (input_,), bad_rows),
                                           topics, cv, None, as_json)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    low = deployed.under(fail_under) if fail_under is not None else []
    if low:
        click.echo(f"F1 under {fail_under}: {', '.join(low)}", err=True)
    sys.exit(EXIT_FAILED if bad or low else EXIT_OK)


def _model_current(clf: Any) -> bool:
    """Whether the loaded model was trained on the rule pack as it is now."""
    from monitor.rules.learned import digest

    pack = clf.learned.meta.get("pack", {}) if clf.learned is not None else {}
    rule_file = Path(clf.topics[0].path)
    return bool(pack) and rule_file.exists() and pack.get("sha256") == digest(rule_file)


def _model_summary(clf: Any) -> dict[str, Any]:
    model = clf.learned
    return {"current": _model_current(clf), "topics": sorted(model.topics),
            "rules_alone": model.meta.get("rules_alone", {})}


@click.command("train")
@click.option("--input", "-i", "inputs", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Labelled JSON lines (repeatable): id, title, text, labels {topic: 0/1}.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Model file to write. Default: beside the rule pack, PACK.model.json "
                   "(which the classifier then loads).")
@click.option("--cv", "cv", type=click.IntRange(2, 20), default=None,
              help="First print K-fold cross-validated figures: rules alone, model alone, both.")
@click.option("--seed", type=int, default=None, help="Seed of the folds (default fixed).")
@click.option("--keep-all", is_flag=True,
              help="Keep every topic's model, even one that does not beat its rules out of fold.")
@click.option("--embeddings/--no-embeddings", default=None,
              help="Also offer each topic's model the article's sentence embedding (kept only "
                   "where it wins out of fold). Default: when wordllama is installed.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_rules_options
@click.pass_context
def train_command(ctx: click.Context, inputs: tuple[Path, ...], output: Path | None,
                  cv: int | None, seed: int | None, keep_all: bool, embeddings: bool | None,
                  as_json: bool, rules: tuple[str, ...], config: str | None,
                  spacy_model: str | None) -> None:
    """Fit the learned second stage on labelled articles and write its model file.

    Per topic, a logistic regression over what the rules computed (hits by
    field, sentences and paragraphs covered, exclusions, war-context mentions,
    score against threshold, length...) and, where it wins out of fold, the
    article's offline sentence embedding. It decides only near the rule
    threshold (vetoing weak matches, rescuing near misses); a topic whose model
    does not beat its rules out of fold is left to the rules. Deterministic:
    the same inputs, rule pack and seed write the same file.

    \b
    Examples:
      newsmon train --input ../shared/eval/train.jsonl --cv 5
      newsmon train -i train.jsonl -i feedback.jsonl -o /tmp/candidate.model.json

    Exit codes: 0 trained; 1 trained, but some input lines were bad; 2 usage
    or config error (or no labelled article).
    """
    from monitor.rules.embedding import is_embedding
    from monitor.rules.learned import DEFAULT_SEED, digest, model_path_for, train_model

    clf = _load_classifier(ctx, rules, config, spacy_model, learned=False)
    topics = [t.id for t in clf.topics]
    rule_file = Path(clf.topics[0].path)
    target = output or model_path_for(rule_file)
    bad: list[tuple[Path, int, str]] = []
    rows = _training_rows(clf, inputs, bad, embeddings)
    for path, number, error in bad:
        click.echo(f"error: {path}:{number}: {error}", err=True)
    out: dict[str, Any] = {}
    if cv is not None:
        out["cross_validated"] = _print_cv(rows, topics, cv, seed, as_json)
    meta = {
        "pack": {"file": rule_file.name, "sha256": digest(rule_file)},
        "trained_on": [{"file": p.name, "sha256": digest(p)} for p in inputs],
        "articles": len(rows),
    }
    if not rows:
        _fail("no labelled articles in the input")
    model = train_model(rows, topics, seed=DEFAULT_SEED if seed is None else seed,
                        select=not keep_all, meta=meta)
    try:
        model.save(target)
    except OSError as exc:
        _fail(f"{target}: {exc.strerror or exc}")
    out["model"] = str(target)
    out["topics"] = {t: {"cutoff": m.cutoff, "mode": m.mode} for t, m in model.topics.items()}
    out["rules_alone"] = model.meta["rules_alone"]
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(f"{len(rows)} labelled articles → {target}")
        for t, m in model.topics.items():
            named = [(f, c) for f, c in zip(m.features, m.coef, strict=True)
                     if not is_embedding(f)]
            strongest = sorted(named, key=lambda fc: -abs(fc[1]))[:4]
            weights = ", ".join(f"{f} {c:+.2f}" for f, c in strongest)
            wording = "; reads the sentence embedding too" if m.uses_embedding else ""
            click.echo(f"  {t}: learned stage decides between {m.band[0]:g}× and {m.band[1]:g}× "
                       f"the threshold, cutoff {m.cutoff:.3f}; strongest: {weights}{wording}")
        for t, why in model.meta["rules_alone"].items():
            click.echo(f"  {t}: rules alone ({why})")
        if not model.topics:
            click.echo("  no topic's model beats its rules: the rules alone decide")
    sys.exit(EXIT_FAILED if bad else EXIT_OK)
