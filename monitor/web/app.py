"""The workspace's pages: aiohttp routes, each a read-model query rendered by a Jinja2
template (autoescaped). Reads go through a read-only connection; the one write,
feedback, through its own connection, CSRF-checked."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from monitor.config import Config, parse_duration, secret_values
from monitor.logs import RedactingFilter
from monitor.models import Article
from monitor.records import StoryListRow, utcnow
from monitor.storage import Storage, StoreError, open_readonly, open_storage
from monitor.storage import read_models as views
from monitor.storage.feedback import VERDICTS, FeedbackRepository
from monitor.storage.operations import OperationsRepository
from monitor.storage.search import SearchFilters, SearchRepository
from monitor.storage.stories import StoryRepository
from monitor.web import atom, render
from monitor.web.playground_fetch import PageFetcher
from monitor.web.security import (
    CSRF_FIELD,
    FEED_KEY_PARAM,
    Credentials,
    Csrf,
    auth_middleware,
    check_bind,
    headers_middleware,
    is_loopback,
)

log = logging.getLogger(__name__)

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8780
PER_PAGE = 20
FEED_ENTRIES = 50  # entries in an Atom feed
INSTANCE_META = "web_instance_id"  # meta key: the Atom ids' stable per-database part
STORIES_SINCE = "24h"  # the stories page's default window (``newsmon stories --since``)
OVERVIEW_STORIES_SINCE, STORIES_PER_TOPIC = "7d", 4  # the overview's latest stories per topic
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml",
                 ".png": "image/png"}
_HEALTHY = {"ok", "new", "disabled", "recovered"}

CONFIG_KEY = web.AppKey("config", Config)
STATE_KEY: web.AppKey[Workspace] = web.AppKey("workspace")


@dataclass
class WebSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    credentials: Credentials = field(default_factory=Credentials)


class Workspace:
    """What the handlers share: the connections, the templates, the redaction."""

    def __init__(self, config: Config, credentials: Credentials) -> None:
        self.config = config
        path = config.database_target()  # a SQLite file or a PostgreSQL URL
        # The feedback connection also creates or upgrades the schema (once, at start).
        self.writer: Storage = open_storage(path)
        self.reader: Storage = open_readonly(path)
        self.search = SearchRepository(self.reader.connection)
        self.feedback = FeedbackRepository(self.writer.connection)
        self.instance = _instance_id(OperationsRepository(self.writer.connection))
        self.feed_key = credentials.feed_key()
        self.pages = PageFetcher(config)
        self.csrf = Csrf()
        self.redactor = RedactingFilter([*secret_values(config), *credentials.secrets()])
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("monitor.web", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
            lstrip_blocks=True)
        self.templates.filters.update(
            when=_when, safe_url=render.safe_url, marks=render.marks, stars=render.stars,
            redact=self.redact)
        self.topic_names = _topic_names(config)
        # Globals, not render arguments: the macros (imported without context) need them too.
        self.templates.globals.update(topic_names=self.topic_names, csrf_field=CSRF_FIELD,
                                      csrf=self.csrf.token, feed_url=self.feed_url)
        self._classifier: Any = None
        self._classifier_lock = asyncio.Lock()
        self.static = _load_static()

    def redact(self, text: str | None) -> str:
        return self.redactor.redact(text) if text else ""

    def feed_url(self, topic: str | None = None) -> str:
        """The path of an Atom feed (all alert events, or one topic's), with the feed key
        when the workspace is guarded (the page's reader already holds the full credentials)."""
        path = f"/feeds/topic/{quote(topic, safe='')}.atom" if topic else "/feeds/all.atom"
        return f"{path}?{FEED_KEY_PARAM}={self.feed_key}" if self.feed_key else path

    def stories_available(self) -> bool:
        return self.reader.connection.has_table("stories")  # SQLite or PostgreSQL

    async def classifier(self) -> Any:
        """The configured rules compiled once, on the playground's first use."""
        async with self._classifier_lock:
            if self._classifier is None:
                from monitor.rules.classifier import Classifier

                files, model = self.config.rule_files(), self.config.analysis.spacy_model
                self._classifier = await asyncio.to_thread(Classifier.from_files, files, model)
        return self._classifier

    def page(self, request: web.Request, template: str, *, status: int = 200,
             **context: Any) -> web.Response:
        html = self.templates.get_template(template).render(
            path=request.path, stories=self.stories_available(), **context)
        return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)

    async def aclose(self) -> None:
        await self.pages.aclose()
        self.reader.close()
        self.writer.close()


def _instance_id(ops: OperationsRepository) -> str:
    """This database's random id (made once): entry ids stay the same across restarts and
    hosts, and two installations' feeds never share an id."""
    found = ops.get_meta(INSTANCE_META)
    if found:
        return found
    made = uuid.uuid4().hex
    ops.set_meta(INSTANCE_META, made)
    return made


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "—"


def _topic_names(config: Config) -> dict[str, str]:
    try:
        from monitor.rules.ruleset import load_rules

        return {t.id: t.name for t in load_rules(config.rule_files()).topics}
    except Exception:  # the pages still work with bare topic ids
        log.warning("rules could not be read; topics are shown by id", exc_info=True)
        return {}


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("monitor.web") / "static"
    return {entry.name: (entry.read_bytes(), _STATIC_TYPES.get("." + entry.name.rsplit(".", 1)[-1],
                                                               "application/octet-stream"))
            for entry in folder.iterdir() if entry.is_file()}


def _ws(request: web.Request) -> Workspace:
    return request.app[STATE_KEY]


# --- pages ---------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    ws = _ws(request)
    now = utcnow()
    today = now.date()
    volume = views.daily_volume(ws.reader.connection, since=datetime.combine(
        today - timedelta(days=29), datetime.min.time(), tzinfo=UTC))
    feeds = [f for f in ws.reader.views.feed_table(ws.config.feeds)
             if f.health not in _HEALTHY or f.failures]
    channels = [c for c in views.channel_summary(ws.reader.connection,
                                                 [c.name for c in ws.config.channels])
                if c.failures or c.dead]
    return ws.page(request, "overview.html", title="Overview",
                   latest=views.latest_matches(ws.reader.connection, per_topic=5),
                   story_window=OVERVIEW_STORIES_SINCE, latest_stories=_latest_stories(ws, now),
                   chart=render.volume_chart(volume, end=today, labels=ws.topic_names),
                   feeds=feeds, channels=channels)


def _latest_stories(ws: Workspace, now: datetime) -> dict[str, list[StoryListRow]]:
    """The newest stories of each topic seen within ``OVERVIEW_STORIES_SINCE`` (the stories'
    ``last_seen`` index bounds the read), a few a topic, topics by name."""
    if not ws.stories_available():
        return {}
    cutoff = now - timedelta(seconds=parse_duration(OVERVIEW_STORIES_SINCE))
    out: dict[str, list[StoryListRow]] = {}
    for row in StoryRepository(ws.reader.connection).list_stories(since=cutoff, limit=500):
        for topic in row.topics:
            shown = out.setdefault(topic, [])
            if len(shown) < STORIES_PER_TOPIC:
                shown.append(row)
    return {t: out[t] for t in sorted(out, key=lambda t: ws.topic_names.get(t, t))}


async def article(request: web.Request) -> web.Response:
    ws = _ws(request)
    try:
        article_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    detail = views.article_detail(ws.reader.connection, article_id)
    if detail is None:
        return ws.page(request, "missing.html", status=404, title="Not found",
                       what=f"article {article_id}")
    terms = {h.get("text", "") for m in detail.matches for h in m.hits}
    terms |= {t for m in detail.matches for t in m.terms}
    sentences = [e.get("text", "") for m in detail.matches for e in m.evidence]
    text = detail.body if detail.body else detail.summary
    return ws.page(
        request, "article.html", title=detail.title or f"Article {article_id}", a=detail,
        body=render.highlighted_text(text or "", terms=terms, sentences=sentences),
        headline=render.highlighted_text(detail.title, terms=terms, sentences=(),
                                         paragraphs=False),
        feedback=ws.feedback.for_article(article_id), verdicts=VERDICTS,
        saved=request.query.get("feedback") == "saved")


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        return None


async def search(request: web.Request) -> web.Response:
    ws = _ws(request)
    q = request.query
    until = _date(q.get("until"))
    choices = _feed_choices(ws.config)
    feed = q.get("feed") or None
    targets = {value: target for value, target, _ in choices}
    filters = SearchFilters(topic=q.get("topic") or None, feed=targets.get(feed, feed) if feed else None,
                            since=_date(q.get("since")),
                            until=until + timedelta(days=1) if until else None,
                            matched_only=q.get("matched") == "1")
    try:
        page_no = max(1, int(q.get("page", "1")))
    except ValueError:
        page_no = 1
    query = q.get("q", "")
    result = ws.search.search(query, filters, page=page_no, per_page=PER_PAGE) if (
        query.strip() or q.get("topic") or q.get("matched")) else None
    feeds = [(value, ws.redact(label)) for value, _, label in choices]
    args = {k: v for k, v in q.items() if k != "page"}
    return ws.page(request, "search.html", title="Search", result=result, q=query, form=q,
                   feeds=feeds, topics=sorted(ws.topic_names), args=args)


def _feed_choices(config: Config) -> list[tuple[str, str, str]]:
    """The search form's feed filter as (form value, what the search filters on, label): a
    feed's name, or ``#n`` for a feed without one, whose URL (it may hold a secret) is then
    never a form value; the label is redacted by the caller."""
    return [(f.name, f.name, f.name) if f.name else (f"#{n}", f.url, f.url)
            for n, f in enumerate(config.feeds)]


async def feeds(request: web.Request) -> web.Response:
    ws = _ws(request)
    return ws.page(request, "feeds.html", title="Feeds",
                   rows=ws.reader.views.feed_table(ws.config.feeds))


async def channels(request: web.Request) -> web.Response:
    ws = _ws(request)
    rows = views.channel_summary(ws.reader.connection, [c.name for c in ws.config.channels])
    return ws.page(request, "channels.html", title="Channels", rows=rows)


async def playground(request: web.Request) -> web.Response:
    ws = _ws(request)
    explanations = None
    form: dict[str, str] = {"title": "", "text": "", "url": ""}
    error, fetched_from = None, None
    if request.method == "POST":
        posted = await request.post()
        why_not = ws.csrf.check(request, posted)
        if why_not:
            return web.Response(status=403, text=f"refused: {why_not}")
        form = {"title": str(posted.get("title", ""))[:2000], "text": str(posted.get("text", ""))[:200_000],
                "url": str(posted.get("url", "")).strip()[:2000]}
        piece: Article | None = None
        if form["url"] and posted.get("action") != "text":
            fetched = await ws.pages.article(form["url"])
            if fetched.article is None:
                error = ws.redact(fetched.error)
            else:
                piece, fetched_from = fetched.article, fetched.final_url
                # Shown in the form, so the analyst sees what was judged and can edit it.
                form["title"], form["text"] = piece.title, piece.body
        elif form["title"].strip() or form["text"].strip():
            piece = Article(title=form["title"], summary="", body=form["text"],
                            text_source="page", url=None)
        if piece is not None:
            try:
                clf = await ws.classifier()
                explanations = await asyncio.to_thread(clf.explain, piece)
                explanations.sort(key=lambda e: (not e.fired, -e.score))
            except Exception as exc:  # a rule error is the analyst's to see, not a 500
                log.warning("playground failed", exc_info=True)
                error = ws.redact(str(exc))
    return ws.page(request, "playground.html", title="Rule playground", form=form,
                   explanations=explanations, error=error,
                   fetched_from=ws.redact(fetched_from) if fetched_from else None)


async def post_feedback(request: web.Request) -> web.Response:
    ws = _ws(request)
    posted = await request.post()
    why_not = ws.csrf.check(request, posted)
    if why_not:
        return web.Response(status=403, text=f"refused: {why_not}")
    try:
        article_id = int(str(posted.get("article_id", "")))
        alert_raw = str(posted.get("alert_id", "") or "")
        alert_id = int(alert_raw) if alert_raw else None
    except ValueError:
        return web.Response(status=400, text="bad article or alert id")
    verdict = str(posted.get("verdict", ""))
    if verdict not in VERDICTS:
        return web.Response(status=400, text="verdict must be relevant or not_relevant")
    topic = str(posted.get("topic", "") or "") or None
    if views.article_detail(ws.reader.connection, article_id) is None:
        return web.Response(status=404, text="no such article")
    try:
        ws.feedback.add(article_id, verdict, topic=topic, alert_id=alert_id)
    except StoreError as exc:
        return web.Response(status=503, text=ws.redact(str(exc)))
    raise web.HTTPSeeOther(f"/article/{article_id}?feedback=saved#feedback")


def _page_number(q: Any) -> int:
    try:
        return max(1, int(q.get("page", "1")))
    except ValueError:
        return 1


async def stories(request: web.Request) -> web.Response:
    ws = _ws(request)
    if not ws.stories_available():
        return ws.page(request, "stories.html", title="Stories", available=False)
    q = request.query
    since_text = q.get("since", STORIES_SINCE).strip()
    error, cutoff = None, None
    if since_text:
        try:
            cutoff = utcnow() - timedelta(seconds=parse_duration(since_text))
        except ValueError as exc:
            error = f"since: {exc}"
    topic = q.get("topic") or None
    page_no = _page_number(q)
    repo = StoryRepository(ws.reader.connection)
    rows = repo.list_stories(since=cutoff, topic=topic, limit=page_no * PER_PAGE + 1)
    shown = rows[(page_no - 1) * PER_PAGE:page_no * PER_PAGE]
    args = {k: v for k, v in q.items() if k != "page"}
    return ws.page(request, "stories.html", title="Stories", available=True, rows=shown,
                   page_no=page_no, more=len(rows) > page_no * PER_PAGE, since=since_text,
                   topic_filter=topic or "", topics=sorted(ws.topic_names), error=error, args=args)


async def story(request: web.Request) -> web.Response:
    ws = _ws(request)
    story_id = request.match_info["id"]
    if not ws.stories_available():
        raise web.HTTPNotFound()
    repo = StoryRepository(ws.reader.connection)
    found = repo.story(story_id)
    if found is None:
        return ws.page(request, "missing.html", status=404, title="Not found",
                       what=f"story {story_id}")
    members = repo.story_members(story_id)
    topics = sorted({t for m in members for t in m.topics})
    return ws.page(request, "story.html", title=found.label or f"Story {story_id}", s=found,
                   members=members, topics=topics,
                   ids=views.story_article_ids(ws.reader.connection, [m.article_key for m in members]),
                   alerts=views.story_alerts(ws.reader.connection, story_id))


def _base_url(request: web.Request) -> str:
    """The workspace's origin as the client sees it. Behind a reverse proxy on the same
    host, its ``X-Forwarded-Proto`` is believed (from loopback only), so links say https."""
    scheme = request.scheme
    forwarded = request.headers.get("X-Forwarded-Proto", "").strip().lower()
    peer = request.remote or ""
    if forwarded in ("http", "https") and is_loopback(peer):
        scheme = forwarded
    return f"{scheme}://{request.host}"


def _atom(request: web.Request, *, topic: str | None) -> web.Response:
    ws = _ws(request)
    events = views.alert_events(ws.reader.connection, topic=topic, limit=FEED_ENTRIES)
    matches = views.matches_of(ws.reader.connection, [e.article_id for e in events])
    name = ws.topic_names.get(topic, topic) if topic else None
    stories_page = "/stories" if ws.stories_available() else "/"
    links = atom.FeedLinks(base=_base_url(request), self_path=ws.feed_url(topic),
                           alternate_path=f"/search?topic={quote(topic)}" if topic else stories_page)
    body = atom.build_feed(
        instance=ws.instance, feed_key=f"topic/{topic}" if topic else "all",
        title=f"newsmon: {name}" if name else "newsmon: all alerts", links=links, events=events,
        matches=matches, topic_names=ws.topic_names, now=utcnow())
    return web.Response(body=body, content_type=atom.ATOM_TYPE, charset="utf-8")


async def atom_all(request: web.Request) -> web.Response:
    """Every alert event, newest first (``/feeds/all.atom``)."""
    return _atom(request, topic=None)


async def atom_topic(request: web.Request) -> web.Response:
    """One topic's alert events (``/feeds/topic/<id>.atom``); 404 for a topic not configured."""
    topic = request.match_info["topic"]
    ws = _ws(request)
    if ws.topic_names and topic not in ws.topic_names:
        raise web.HTTPNotFound()
    return _atom(request, topic=topic)


async def static(request: web.Request) -> web.Response:
    found = _ws(request).static.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    body, kind = found
    return web.Response(body=body, content_type=kind,
                        headers={"Cache-Control": "public, max-age=3600"})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@web.middleware
async def not_found_page(request: web.Request,
                         handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _ws(request).page(request, "missing.html", status=404, title="Not found",
                                 what=request.path)


# --- the application -----------------------------------------------------------------------


def create_app(config: Config, *, credentials: Credentials | None = None) -> web.Application:
    """The workspace as an aiohttp application (the database must exist)."""
    credentials = credentials or Credentials()
    app = web.Application(middlewares=[headers_middleware, auth_middleware(credentials),
                                       not_found_page], client_max_size=1024 * 1024)
    workspace = Workspace(config, credentials)
    app[STATE_KEY] = workspace
    app[CONFIG_KEY] = config

    async def close(_app: web.Application) -> None:
        await workspace.aclose()

    app.on_cleanup.append(close)
    app.router.add_get("/", overview)
    app.router.add_get("/article/{id}", article)
    app.router.add_get("/search", search)
    app.router.add_get("/feeds", feeds)
    app.router.add_get("/channels", channels)
    app.router.add_get("/playground", playground)
    app.router.add_post("/playground", playground)
    app.router.add_post("/feedback", post_feedback)
    app.router.add_get("/stories", stories)
    app.router.add_get("/story/{id}", story)
    app.router.add_get("/feeds/all.atom", atom_all)
    app.router.add_get(r"/feeds/topic/{topic:[^/]+}.atom", atom_topic)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(config: Config, settings: WebSettings,
                ready: Callable[[str], None] | None = None) -> None:
    """Listen until cancelled. Refuses a non-loopback address without credentials."""
    check_bind(settings.host, settings.credentials)
    app = create_app(config, credentials=settings.credentials)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = settings.port
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            port = server.sockets[0].getsockname()[1]
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        if ready is not None:
            ready(f"http://{host}:{port}/")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
