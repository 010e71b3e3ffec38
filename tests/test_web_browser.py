"""The workspace in a real headless Chromium (Debian chromium + chromium-driver via
selenium): each page loads without a JavaScript error, search, open an article,
give feedback (the row is checked), hostile content stays inert; screenshots in tmp_path."""

from __future__ import annotations

import shutil
import sqlite3
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Config, FeedConfig
from monitor.rules.ruleset import load_rules
from tests.helpers.configs import ConfigFactory
from tests.helpers.feed import PIPELINE_CHANNELS, build, run
from tests.helpers.servers import Site, article_html, rss
from tests.helpers.web import HOSTILE_BODY, HOSTILE_TITLE, WebServer, fill

pytestmark = pytest.mark.browser

CHROMEDRIVER, CHROMIUM = "/usr/bin/chromedriver", "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000")


# Run in every document before its own scripts (DevTools injects it; the CSP does not
# apply): uncaught errors, unhandled rejections, console.error and CSP violations.
ERROR_WATCH = """
window.__errors = [];
addEventListener("error", (e) => window.__errors.push("error: " + (e.message
    || (e.target && (e.target.src || e.target.href)) || e.type)), true);
addEventListener("unhandledrejection", (e) => window.__errors.push("rejection: " + e.reason));
document.addEventListener("securitypolicyviolation", (e) => window.__errors.push(
    "csp: " + e.violatedDirective + " " + (e.blockedURI || "inline") + " line " + e.lineNumber));
const consoleError = console.error.bind(console);
console.error = (...args) => { window.__errors.push("console: " + args.join(" ")); consoleError(...args); };
"""


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMEDRIVER, CHROMIUM):
        if not Path(path).exists() and not shutil.which(Path(path).name):
            return f"{path} missing: apt-get install chromium chromium-driver (.ci/run does)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    # Before any page script: collect what the page itself reports (see page_errors).
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_WATCH})
    try:
        yield driver
    finally:
        driver.quit()


def _serve(tmp_path_factory: pytest.TempPathFactory, name: str,
           filler: Callable[[Path, Site], Config]) -> Iterator[WebServer]:
    """The workspace over a database filled through the real pipeline by ``filler``."""
    with Site() as site:
        config = filler(tmp_path_factory.mktemp(name), site)
    with WebServer(config) as srv:
        yield srv


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    yield from _serve(tmp_path_factory, "webdb", fill)


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def visit(driver: Any, url: str, shot: Path) -> None:
    driver.get(url)
    driver.save_screenshot(str(shot))
    assert console_errors(driver) == [], url


def test_every_page_loads_without_a_javascript_error(browser: Any, server: WebServer,
                                                     tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    for name, path in (("overview", "/"), ("search", "/search?q=ceasefire"), ("feeds", "/feeds"),
                       ("channels", "/channels"), ("playground", "/playground"),
                       ("stories", "/stories"), ("article", "/article/1")):
        visit(browser, server.url + path, tmp_path / f"{name}.png")
        assert browser.find_element(By.TAG_NAME, "h1").text
    assert (tmp_path / "overview.png").stat().st_size > 1000
    browser.get(server.url + "/")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline")


def test_search_open_an_article_and_give_feedback(browser: Any, server: WebServer,
                                                  tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server.url + "/")
    box = browser.find_element(By.ID, "quick-search")
    box.send_keys("ceasefire", Keys.ENTER)
    assert "result" in browser.find_element(By.CSS_SELECTOR, "[data-testid=result-count]").text
    assert browser.find_elements(By.CSS_SELECTOR, ".results mark")
    browser.save_screenshot(str(tmp_path / "search.png"))
    browser.find_element(By.CSS_SELECTOR, ".results a.title").click()
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, 20).until(lambda b: "/article/" in b.current_url)
    assert browser.find_elements(By.CSS_SELECTOR, ".body .evidence mark")
    article_id = int(browser.current_url.rsplit("/", 1)[1].split("?")[0])
    browser.find_element(By.CSS_SELECTOR, "[data-testid=relevant-article]").click()
    # The click posts a form and follows a redirect: wait for it (a loaded CI machine is slow).
    WebDriverWait(browser, 20).until(lambda b: "feedback=saved" in b.current_url)
    assert "feedback=saved" in browser.current_url
    assert "feedback is saved" in browser.find_element(By.CSS_SELECTOR, ".notice").text
    browser.save_screenshot(str(tmp_path / "feedback.png"))
    assert console_errors(browser) == []
    db = sqlite3.connect(server.config.database_path())
    try:
        assert db.execute("SELECT article_id, topic, verdict, source FROM feedback").fetchall() == [
            (article_id, None, "relevant", "web")]
    finally:
        db.close()


def test_hostile_content_is_inert(browser: Any, server: WebServer, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    db = sqlite3.connect(server.config.database_path())
    ids = [r[0] for r in db.execute("SELECT id FROM articles WHERE title LIKE '%pwned%'")]
    db.close()
    assert len(ids) == 2
    for n, aid in enumerate(ids):
        visit(browser, f"{server.url}/article/{aid}", tmp_path / f"hostile-{n}.png")
        assert browser.execute_script("return window.pwned === undefined")
        assert browser.title.endswith("· newsmon") and browser.title != "pwned"
        assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img, main [onerror]")
        assert not browser.find_elements(By.CSS_SELECTOR, "a[href^='javascript']")
    visit(browser, server.url + "/search?q=pwned", tmp_path / "hostile-search.png")
    assert browser.execute_script("return window.pwned === undefined")


def test_the_playground_explains_a_pasted_text(browser: Any, server: WebServer, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/playground")
    browser.find_element(By.ID, "pg-title").send_keys("Kremlin rejects ceasefire talks")
    browser.find_element(By.ID, "pg-text").send_keys("Negotiators met in Istanbul for peace talks.")
    browser.find_element(By.ID, "pg-run").click()
    # The first run compiles the rules: wait for the answer, not a fixed time.
    fired = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".match.fired"), 60)
    assert fired and "FIRES" in fired[0].text
    browser.save_screenshot(str(tmp_path / "playground.png"))
    assert console_errors(browser) == []


def test_the_csp_blocks_an_injected_inline_script(browser: Any, server: WebServer) -> None:
    browser.get(server.url + "/")
    ran = browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.inlineRan = 1';"
        " document.body.appendChild(s); return window.inlineRan === 1;")
    assert ran is False  # script-src 'self': inline code never runs
    browser.get_log("browser")  # the CSP report is expected here; drop it


# --- a database with stories: two outlets' reports of one ceasefire, through the real pipeline ---

WIRE = ["Negotiators from Russia and Ukraine agreed a ceasefire on Tuesday after three days of"
        " talks in Istanbul.",
        "The truce takes effect at midnight along the front line, officials in Kyiv and Moscow said.",
        "Observers from the OSCE will monitor the ceasefire, the Turkish foreign minister said."]
STORY_FEEDS = {
    "/wire/feed": ("wire-desk", {
        "/wire/ceasefire": ("Russia and Ukraine agree ceasefire after Istanbul talks", WIRE),
        "/wire/football": ("Local football club wins the cup",
                           ["The club won the final two goals to nil in front of a home crowd."]),
    }),
    "/daily/feed": ("daily-post", {
        "/daily/truce": ("Ceasefire agreed: Russia and Ukraine to halt fighting at midnight", [
            "Russia and Ukraine agreed a ceasefire on Tuesday after three days of talks in Istanbul,"
            " negotiators said.",
            "The truce takes effect at midnight along the front line, officials in Kyiv and Moscow said.",
            "OSCE observers will monitor the ceasefire, Turkey's foreign minister said."]),
    }),
}


def fill_stories(folder: Path, site: Site) -> Config:
    """Two feeds polled by the real pipeline with stories on (the shipped ``per_story``):
    the two ceasefire reports become one story that alerts; a hostile item rides along, so
    every page below also shows that hostile text stays inert (no CSP report either)."""
    feeds = []
    for feed_path, (name, articles) in STORY_FEEDS.items():
        items = []
        for path, (title, paragraphs) in articles.items():
            site.routes[path] = (200, {"Content-Type": "text/html; charset=utf-8"},
                                 article_html(title, paragraphs))
            items.append({"title": title, "link": site.url(path), "guid": path,
                          "description": paragraphs[0]})
        if name == "wire-desk":
            items.append({"title": HOSTILE_TITLE, "link": site.url("/wire/hostile"), "guid": "hostile",
                          "description": HOSTILE_BODY})
        site.routes[feed_path] = (200, {"Content-Type": "application/rss+xml"}, rss(items, name))
        feeds.append(FeedConfig(url=site.url(feed_path), name=name))
    config = ConfigFactory(folder).load(database="stories.db", feeds=feeds, channels=PIPELINE_CHANNELS,
                                        fetch={"fetch_articles": True}, delivery={"per_story": True})
    pipeline = build(config, real_matching=True)

    async def poll_all() -> list[Any]:  # one loop: run() closes the fetcher after it
        return [await pipeline.poll(feed, force=True) for feed in config.feeds]

    try:
        outcomes = run(pipeline, poll_all())
    finally:
        pipeline.storage.close()
    assert all(o.ok for o in outcomes), outcomes
    return config


@pytest.fixture(scope="module")
def story_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    yield from _serve(tmp_path_factory, "storydb", fill_stories)


def query(config: Config, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(config.database_path())
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def alerted_story(config: Config) -> tuple[str, str]:
    """The story (id, label) whose alerts the pipeline queued: found in the database."""
    found = query(config, "SELECT DISTINCT s.story_id, s.label FROM alerts a"
                          " JOIN stories s ON s.story_id = a.story_id")
    assert len(found) == 1, found
    return found[0]


def page_errors(driver: Any) -> list[str]:
    """What the page reported (ERROR_WATCH) plus the browser's own error log (drained)."""
    seen = driver.execute_script("return window.__errors || []")
    return [*seen, *console_errors(driver)]


def wait_for(driver: Any, condition: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def open_page(driver: Any, url: str) -> None:
    """Load a page and wait for its heading (a loaded machine is slow)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_for(driver, lambda d: d.find_elements(By.TAG_NAME, "h1"))


def test_follow_a_story_to_its_article_and_evidence(browser: Any, story_server: WebServer,
                                                    tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    story_id, label = alerted_story(story_server.config)
    members = {t for (t,) in query(story_server.config,
                                   "SELECT headline FROM story_articles WHERE story_id = ?", story_id)}
    assert len(members) >= 2  # both outlets' reports are one story
    # The stories list has it; the overview's latest stories of its topics link it too.
    open_page(browser, story_server.url + "/stories")
    assert browser.find_elements(By.LINK_TEXT, label)
    browser.save_screenshot(str(tmp_path / "stories.png"))
    open_page(browser, story_server.url + "/")
    latest = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=stories-h]")
    assert len(latest.find_elements(By.LINK_TEXT, label)) == 2  # its two topics' cards
    browser.save_screenshot(str(tmp_path / "overview.png"))
    latest.find_element(By.LINK_TEXT, label).click()
    wait_for(browser, lambda d: f"/story/{story_id}" in d.current_url)
    browser.save_screenshot(str(tmp_path / "story.png"))
    assert browser.find_element(By.TAG_NAME, "h1").text == label
    articles = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=articles-h]")
    shown = {a.text for a in articles.find_elements(By.CSS_SELECTOR, "a[href^='/article/']")}
    assert members <= shown
    assert "document.title" in articles.text  # the hostile member, as text
    # The alerts it produced and where they went, as stored.
    stored = query(story_server.config, "SELECT channel, topic, status FROM alerts WHERE story_id = ?",
                   story_id)
    rows = browser.find_elements(By.CSS_SELECTOR, "section[aria-labelledby=alerts-h] tbody tr")
    assert len(rows) == len(stored) >= 1
    names = {t.id: t.name for t in load_rules(story_server.config.rule_files()).topics}
    shown_rows = [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    for channel, topic, status in stored:
        assert [channel, names[topic], status] in [cells[:2] + cells[3:4] for cells in shown_rows], (
            channel, topic, status, shown_rows)
    # Through to the article that alerted: its evidence is highlighted.
    (alerted_id,) = {a for (a,) in query(story_server.config,
                                         "SELECT article_id FROM alerts WHERE story_id = ?", story_id)}
    browser.find_element(
        By.CSS_SELECTOR, f"section[aria-labelledby=articles-h] a[href='/article/{alerted_id}']").click()
    wait_for(browser, lambda d: f"/article/{alerted_id}" in d.current_url)
    marks = browser.find_elements(By.CSS_SELECTOR, ".body .evidence mark")
    assert marks and any("ceasefire" in m.text.lower() for m in marks)
    scores = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".explain .score")]
    assert scores and all("threshold" in s for s in scores)
    browser.save_screenshot(str(tmp_path / "article.png"))
    assert page_errors(browser) == []


def test_the_atom_links_give_valid_atom_with_the_alerts(browser: Any, story_server: WebServer) -> None:
    import feedparser
    from selenium.webdriver.common.by import By

    config = story_server.config
    open_page(browser, story_server.url + "/")
    alternates = {e.get_attribute("title"): e.get_attribute("href") for e in browser.find_elements(
        By.CSS_SELECTOR, "link[rel=alternate][type='application/atom+xml']")}
    assert alternates["newsmon: all alerts"] == story_server.url + "/feeds/all.atom"
    visible = browser.find_element(By.ID, "atom-all").get_attribute("href")
    assert visible == alternates["newsmon: all alerts"]
    # A topic's page (the topic's search) links its own feed.
    open_page(browser, story_server.url + "/search?topic=ceasefire")
    topic_href = browser.find_element(By.ID, "atom-topic").get_attribute("href")
    assert topic_href == browser.find_element(
        By.CSS_SELECTOR, "link[rel=alternate][href$='ceasefire.atom']").get_attribute("href")
    _, label = alerted_story(config)
    for href, topic in ((visible, None), (topic_href, "ceasefire")):
        with urllib.request.urlopen(href) as response:
            assert response.headers["Content-Type"].startswith("application/atom+xml")
            parsed = feedparser.parse(response.read())
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        assert parsed.version == "atom10"
        sql = ("SELECT DISTINCT ar.url FROM alerts al JOIN articles ar ON ar.id = al.article_id"
               + (" WHERE al.topic = ?" if topic else ""))
        expected = {u for (u,) in query(config, sql, *([topic] if topic else []))}
        assert expected and {e.link for e in parsed.entries} == expected
        assert all(e.title == label for e in parsed.entries)
        assert all(e.id.startswith("tag:") for e in parsed.entries)
        if topic:
            assert all(topic in {t.term for t in e.tags} for e in parsed.entries)


def test_no_page_logs_a_javascript_error_or_a_csp_violation(browser: Any, story_server: WebServer,
                                                            tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    config = story_server.config
    story_id, _ = alerted_story(config)
    (article_id,) = {a for (a,) in query(config, "SELECT article_id FROM alerts")}
    (hostile_id,) = [a for (a,) in query(config, "SELECT id FROM articles WHERE title LIKE '%pwned%'")]
    pages = {"overview": "/", "stories": "/stories", "story": f"/story/{story_id}",
             "article": f"/article/{article_id}", "hostile-article": f"/article/{hostile_id}",
             "search": "/search?q=ceasefire&matched=1", "feeds": "/feeds", "channels": "/channels",
             "playground": "/playground"}
    for name, path in pages.items():
        open_page(browser, story_server.url + path)
        browser.save_screenshot(str(tmp_path / f"{name}.png"))
        assert page_errors(browser) == [], name
        assert browser.execute_script("return window.pwned === undefined"), name
    open_page(browser, story_server.url + "/search?q=ceasefire&matched=1")
    assert browser.find_elements(By.CSS_SELECTOR, ".results li.result")  # search with results
    # The playground run (a POST) and a feedback click (POST, redirect) are pages too.
    open_page(browser, story_server.url + "/playground")
    browser.find_element(By.ID, "pg-title").send_keys("Kremlin rejects ceasefire talks")
    browser.find_element(By.ID, "pg-run").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".match"))
    assert page_errors(browser) == [], "playground run"
    open_page(browser, f"{story_server.url}/article/{article_id}")
    browser.find_element(By.CSS_SELECTOR, "#feedback [data-testid=relevant-article]").click()
    wait_for(browser, lambda d: "feedback=saved" in d.current_url)
    browser.save_screenshot(str(tmp_path / "after-feedback.png"))
    assert page_errors(browser) == [], "after feedback"
    # The watch itself works: an inline style the CSP refuses is reported.
    browser.execute_script("const d = document.createElement('div');"
                           " d.setAttribute('style', 'color: red'); document.body.appendChild(d);")
    wait_for(browser, lambda d: d.execute_script("return window.__errors.length") > 0)
    assert any(e.startswith("csp: style-src") for e in page_errors(browser))


def test_feedback_on_an_alert_from_the_page_is_recorded(browser: Any, story_server: WebServer,
                                                        tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    config = story_server.config
    alert_id, article_id, topic = query(config, "SELECT id, article_id, topic FROM alerts"
                                                " WHERE topic = 'ceasefire'")[0]
    before = query(config, "SELECT count(*) FROM feedback")[0][0]
    open_page(browser, f"{story_server.url}/article/{article_id}")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR,
                                                "section[aria-labelledby=alerts-h] tbody tr")
               if r.find_elements(By.CSS_SELECTOR, f"input[name=alert_id][value='{alert_id}']"))
    row.find_element(By.CSS_SELECTOR, f"[data-testid=not-relevant-{topic}]").click()
    wait_for(browser, lambda d: "feedback=saved" in d.current_url)
    assert "feedback is saved" in browser.find_element(By.CSS_SELECTOR, ".notice").text
    history = browser.find_element(By.CSS_SELECTOR, ".feedback-history").text
    name = {t.id: t.name for t in load_rules(config.rule_files()).topics}[topic]
    assert f"not relevant for {name} (alert {alert_id})" in history
    browser.save_screenshot(str(tmp_path / "alert-feedback.png"))
    assert page_errors(browser) == []
    rows = query(config, "SELECT article_id, topic, alert_id, verdict, source FROM feedback"
                         " ORDER BY id")
    assert len(rows) == before + 1
    assert rows[-1] == (article_id, topic, alert_id, "not_relevant", "web")
