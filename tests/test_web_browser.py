"""The workspace in a real headless Chromium (Debian chromium + chromium-driver via
selenium): each page loads without a JavaScript error, search, open an article,
give feedback (the row is checked), hostile content stays inert; screenshots in tmp_path."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.servers import Site
from tests.helpers.web import WebServer, fill

pytestmark = pytest.mark.browser

CHROMEDRIVER, CHROMIUM = "/usr/bin/chromedriver", "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000")


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
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    with Site() as site:
        config = fill(tmp_path_factory.mktemp("webdb"), site)
    with WebServer(config) as srv:
        yield srv


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
    fired = browser.find_elements(By.CSS_SELECTOR, ".match.fired")
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
