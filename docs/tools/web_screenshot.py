"""The workspace screenshots in docs/ (``web-overview.png``, ``web-story.png``), made the way a
user's workspace gets its data: the real pipeline (fetch, extract, analyse, match, stories,
outbox) polls loopback feeds of three made-up outlets, the real deliverer sends the alerts
to a loopback webhook, ``newsmon web`` serves the database and headless Chromium (Debian's
``chromium`` + ``chromium-driver``, through selenium) takes the pictures.

The sample articles below are short fictional reports written for this project (no real
outlet's text). To give the overview's chart a month, the feeds are replayed a day at a
time over the last 24 days: before each round the stored clock (``storage.items.utcnow``, the
pipeline's ``wall_clock``, the story keeper's clock, the deliverer's ``now``) is set to that
day, as ``bench/web_bench.py`` does; nothing else is simulated.

    .venv/bin/python docs/tools/web_screenshot.py   # writes docs/web-overview.png, docs/web-story.png
    .venv/bin/python docs/tools/web_screenshot.py --out /tmp/shots --keep /tmp/shots/sample.db
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape as xml_escape

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import monitor.storage.items as items_module  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.runtime.assembly import Runtime  # noqa: E402
from monitor.web import WebSettings, serve  # noqa: E402

# (days before today, outlet, slug, title, paragraphs): fictional, written for this project.
ARTICLES: list[tuple[int, str, str, str, list[str]]] = [
    (23, "ledger", "eu-air-defence-aid", "EU ministers approve €2bn aid package for Ukraine's air defence", [
        "European Union foreign ministers approved a €2bn military aid package for Ukraine on Monday,"
        " most of it for air-defence systems and interceptor missiles.",
        "The package, financed from the European Peace Facility, will be delivered over six months,"
        " officials said after the meeting in Brussels.",
        "Ukraine's defence ministry welcomed the decision and said the first batteries were expected"
        " before winter."]),
    (21, "harbour", "odesa-grain-insurance", "Grain ships leave Odesa as insurers cut war-risk premiums", [
        "Four bulk carriers loaded with wheat and maize left Odesa on Wednesday, port officials said,"
        " as marine insurers lowered war-risk premiums for the Black Sea route.",
        "Shipping agents said the cheaper cover had brought back operators who had avoided the"
        " corridor since the spring."]),
    (19, "wire", "kremlin-open-to-talks",
     "Kremlin says it is open to talks with Kyiv but rejects preconditions", [
        "The Kremlin said on Friday it was open to peace talks with Ukraine but rejected what it called"
        " preconditions set by Kyiv for any negotiations.",
        "A Kremlin spokesman told reporters that Moscow would consider a meeting of delegations if it"
        " were prepared without demands on territory.",
        "Ukrainian officials said any negotiations would have to start from the withdrawal of"
        " Russian troops."]),
    (17, "ledger", "kyiv-no-concessions", "Kyiv rules out territorial concessions ahead of Geneva meeting", [
        "Ukraine's president said on Sunday that Kyiv would not trade territory for a peace deal,"
        " days before a planned meeting of negotiators in Geneva.",
        "Officials in Kyiv said the talks would focus on a possible ceasefire, prisoner exchanges and"
        " the safety of nuclear plants.",
        "Swiss diplomats confirmed they would host the meeting."]),
    (14, "wire", "us-artillery-aid", "US announces new military aid package including artillery shells", [
        "The United States announced a $1.2bn military aid package for Ukraine on Tuesday, including"
        " artillery shells, armoured vehicles and spare parts for air-defence systems.",
        "The Pentagon said the weapons would be drawn from existing stocks so they could reach the"
        " front within weeks.",
        "Ukraine's defence minister thanked Washington for the security assistance, which Kyiv"
        " says it needs to hold back Russian forces in the east."]),
    (13, "harbour", "us-aid-explained", "Washington's latest aid package for Ukraine: what it contains", [
        "The $1.2bn military aid package announced by the United States for Ukraine includes artillery"
        " shells, armoured vehicles and air-defence spare parts, the Pentagon said.",
        "It is the third such package this year; Congress approved the funds in the spring.",
        "Analysts said the artillery shells would matter most for the coming months."]),
    (11, "wire", "geneva-talks-open",
     "Russian and Ukrainian negotiators meet in Geneva for first direct talks in two years", [
        "Negotiators from Russia and Ukraine met in Geneva on Thursday for their first direct peace"
        " talks in two years, Swiss mediators said.",
        "The delegations discussed a possible ceasefire, an exchange of prisoners and access for"
        " humanitarian convoys, according to a statement.",
        "Both sides described the first day of negotiations as difficult but useful."]),
    (10, "ledger", "geneva-talks-end", "Geneva talks end without agreement; delegations to meet again", [
        "Peace talks between Russia and Ukraine in Geneva ended on Friday without an agreement, but"
        " the negotiators agreed to meet again within two weeks.",
        "A Ukrainian delegate said the sides were still far apart on a ceasefire line.",
        "Swiss mediators said the next round would be prepared by working groups."]),
    (7, "harbour", "tram-line", "City council approves new tram line to the river port", [
        "The city council approved a new tram line to the river port on Monday, with construction due"
        " to start next year.",
        "The line will have nine stops and replace two bus routes."]),
    (4, "wire", "ceasefire-agreed", "Russia and Ukraine agree 30-day ceasefire along the southern front", [
        "Russia and Ukraine agreed a 30-day ceasefire along the southern front on Saturday after a"
        " second round of talks in Geneva, mediators said.",
        "The truce is to take effect at midnight and will be monitored by observers from the OSCE,"
        " the Swiss foreign ministry said.",
        "Negotiators also agreed to continue talks on a wider peace deal and on prisoner exchanges."]),
    (4, "ledger", "guns-to-fall-silent",
     "Ceasefire agreed in Geneva: guns to fall silent on the southern front at midnight", [
        "Russia and Ukraine agreed on Saturday to a 30-day ceasefire along the southern front after"
        " talks in Geneva, Swiss mediators announced.",
        "The truce will be monitored by OSCE observers from midnight, the mediators said.",
        "Officials in Kyiv and Moscow confirmed the deal; residents of front-line towns said they"
        " hoped the ceasefire would hold."]),
    (3, "harbour", "first-night", "Ceasefire holds on first night, monitors report few violations", [
        "The ceasefire on the southern front largely held on its first night, OSCE monitors said on"
        " Sunday, reporting a handful of violations near Kherson.",
        "The Russian and Ukrainian armies said they had ordered their units to respect the truce,"
        " and the Kremlin called the night calm."]),
    (1, "wire", "truce-breaches", "Both sides accuse each other of breaching the truce near Kherson", [
        "Russia and Ukraine accused each other on Wednesday of breaching the ceasefire near Kherson,"
        " where shelling was reported overnight.",
        "OSCE monitors said they were investigating the reports and that the truce was holding"
        " elsewhere on the southern front."]),
    (0, "ledger", "humanitarian-aid-truce",
     "Norway pledges humanitarian aid for front-line towns during the truce", [
        "Norway pledged 500m kroner in humanitarian aid for towns on Ukraine's southern front on"
        " Thursday, to be delivered while the ceasefire holds.",
        "The aid package for Ukraine will pay for generators, medicine and repairs to water networks"
        " in towns shelled by Russian forces, the Norwegian foreign ministry said in Oslo."]),
    (0, "wire", "prisoner-exchange", "Prisoner exchange agreed as part of the southern ceasefire", [
        "Russia and Ukraine will exchange 200 prisoners of war next week as part of the ceasefire on"
        " the southern front, the Geneva mediators said on Thursday.",
        "The exchange was agreed at the talks that produced the 30-day truce, officials in Kyiv"
        " and Moscow said."]),
]
OUTLETS = {"wire": ("127.0.0.1", "Wire Service"), "ledger": ("127.0.0.2", "Eastern Ledger"),
           "harbour": ("127.0.0.3", "Harbour Times")}


class Outlet:
    """One made-up news site on a loopback address: an RSS feed of what it has published so
    far and its article pages; ``/hook`` takes the deliverer's webhook posts."""

    def __init__(self, host: str, title: str) -> None:
        self.title = title
        self.pages: dict[str, bytes] = {}
        self.items: list[dict[str, str]] = []
        self.received = 0
        outlet = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/feed":
                    self._send(200, "application/rss+xml", outlet.feed())
                elif path in outlet.pages:
                    self._send(200, "text/html; charset=utf-8", outlet.pages[path])
                else:
                    self._send(404, "text/plain", b"not found")

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outlet.received += 1
                self._send(200, "application/json", b"{}")

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.base = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, slug: str, title: str, paragraphs: list[str], when: datetime) -> None:
        body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
        self.pages[f"/news/{slug}"] = (
            f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"</head><body><header><a href='/'>{escape(self.title)}</a></header><main><article>"
            f"<h1>{escape(title)}</h1>{body}</article></main></body></html>").encode()
        self.items.insert(0, {"title": title, "link": f"{self.base}/news/{slug}", "guid": slug,
                              "description": paragraphs[0], "pubDate": format_datetime(when)})

    def feed(self) -> bytes:
        parts = [f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
                 f"<title>{xml_escape(self.title)}</title><link>{self.base}/</link>"
                 f"<description>sample</description>"]
        for item in self.items:
            parts.append("<item>" + "".join(f"<{k}>{xml_escape(v)}</{k}>" for k, v in item.items())
                         + "</item>")
        return ("".join(parts) + "</channel></rss>").encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_config(folder: Path, outlets: dict[str, Outlet], hook: str) -> Path:
    feeds = "".join(f"  - url: {o.base}/feed\n    name: {o.title}\n" for o in outlets.values())
    path = folder / "newsmon.yaml"
    path.write_text(
        f"database: sample.db\nfeeds:\n{feeds}channels:\n  - name: desk\n    url: {hook}\n"
        f"rules:\n  - {REPO / 'config' / 'rules'}\n"
        "fetch:\n  allow_networks: [127.0.0.0/8]\n  backlog_as_seen: false\n"
        "analysis:\n  workers: 0\n", encoding="utf-8")
    return path


async def fill(config_path: Path, outlets: dict[str, Outlet]) -> None:
    """Replay the sample a day at a time through the pipeline, delivering after each day."""
    config = load_config(config_path)
    runtime = Runtime.build(config, workers=0)
    clock = {"now": datetime.now(UTC)}
    real_utcnow = items_module.utcnow
    items_module.utcnow = lambda: clock["now"]
    runtime.pipeline.wall_clock = lambda: clock["now"]
    if runtime.pipeline.stories is not None:  # the keeper is made on first use, with this clock
        runtime.pipeline.stories.options["clock"] = lambda: clock["now"]
    # Day 0's round ends an hour ago: nothing is stored in the future of the real clock.
    last = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    try:
        for days_ago in sorted({a[0] for a in ARTICLES}, reverse=True):
            clock["now"] = last - timedelta(days=days_ago)
            for n, (ago, outlet, slug, title, paragraphs) in enumerate(ARTICLES):
                if ago == days_ago:  # published in the 3 hours before the poll
                    when = clock["now"] - timedelta(hours=3) + timedelta(minutes=10 * n)
                    outlets[outlet].publish(slug, title, paragraphs, when)
            for feed in config.feeds:
                outcome = await runtime.pipeline.poll(feed, force=True)
                if not outcome.ok:
                    raise SystemExit(f"poll failed: {outcome}")
            # Delivered a few minutes after the poll, on the same clock.
            await asyncio.to_thread(runtime.deliverer.deliver_due, runtime.delivery_storage.outbox,
                                    now=clock["now"] + timedelta(minutes=3))
    finally:
        items_module.utcnow = real_utcnow
        await runtime.aclose()


@contextmanager
def workspace(config_path: Path) -> Iterator[str]:
    """``newsmon web`` on 127.0.0.1 (a free port) in a thread; yields its URL."""
    config = load_config(config_path)
    found: dict[str, str] = {}
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    def started(url: str) -> None:
        found["url"] = url.rstrip("/")
        ready.set()

    task = loop.create_task(serve(config, WebSettings(port=0), started))
    thread = threading.Thread(target=lambda: loop.run_until_complete(asyncio.wait([task])), daemon=True)
    thread.start()
    if not ready.wait(60):
        raise SystemExit("the workspace did not start")
    try:
        yield found["url"]
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)


def story_to_show(database: Path) -> str:
    """The story with the most alerts (then articles): the story page worth a picture."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT s.story_id FROM stories s LEFT JOIN alerts a ON a.story_id = s.story_id"
                         " GROUP BY s.story_id ORDER BY count(a.id) DESC, s.size DESC, s.last_seen DESC"
                         " LIMIT 1").fetchone()
    finally:
        db.close()
    if row is None:
        raise SystemExit("no story was stored")
    return str(row[0])


def screenshots(url: str, story_id: str, out: Path, profile: Path) -> list[Path]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    written = []
    try:
        story_url = f"{url}/story/{quote(story_id)}"
        for name, page in (("web-overview.png", url + "/"), ("web-story.png", story_url)):
            driver.set_window_size(1280, 900)
            driver.get(page)
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.TAG_NAME, "footer"))
            # The whole page, down to the footer (a window that tall, capped).
            # (The window size counts the browser's frame: add what the page does not get.)
            height, frame = driver.execute_script(
                "return [Math.ceil(document.querySelector('footer').getBoundingClientRect().bottom) + 16,"
                " window.outerHeight - window.innerHeight]")
            driver.set_window_size(1280, min(int(height), 2400) + int(frame))
            target = out / name
            driver.save_screenshot(str(target))
            written.append(target)
    finally:
        driver.quit()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the PNGs (docs/)")
    parser.add_argument("--keep", type=Path, help="copy the sample database here")
    args = parser.parse_args()
    outlets = {key: Outlet(host, title) for key, (host, title) in OUTLETS.items()}
    try:
        with tempfile.TemporaryDirectory(prefix="newsmon-shot-") as tmp:
            folder = Path(tmp)
            config_path = write_config(folder, outlets, f"json://{outlets['wire'].base[7:]}/hook")
            asyncio.run(fill(config_path, outlets))
            print(f"filled {len(ARTICLES)} sample articles from {len(outlets)} loopback feeds; "
                  f"{outlets['wire'].received} alert messages delivered to the loopback webhook")
            if args.keep:
                shutil.copyfile(folder / "sample.db", args.keep)
            args.out.mkdir(parents=True, exist_ok=True)
            with workspace(config_path) as url:
                shots = screenshots(url, story_to_show(folder / "sample.db"), args.out, folder / "chromium")
                for path in shots:
                    print(f"wrote {path}")
    finally:
        for outlet in outlets.values():
            outlet.close()


if __name__ == "__main__":
    main()
