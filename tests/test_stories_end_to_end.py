"""Stories through the real pipeline: loopback feeds, real matching, the real outbox.

Ten republications of one wire story across five feeds (five outlets) are one story
and one alert per channel; a later article of that story with a new topic is one
follow-up; unrelated stories of the same topic alert once each. Delivered through apprise to a
loopback webhook and a real SMTP server (aiosmtpd): one message per story per channel.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from monitor.config import Config
from monitor.delivery.deliverer import Deliverer
from monitor.runtime.pipeline import Pipeline
from monitor.runtime.stories import LazyStoryKeeper
from monitor.storage import open_storage
from monitor.storage.stories import StoryRepository
from tests.helpers.configs import ConfigFactory
from tests.helpers.feed import build, run
from tests.helpers.rules import write_rules
from tests.helpers.servers import Mailbox, Site, rss

RULES = """
topics:
  - id: ceasefire
    threshold: 1
    fields: {title: 1, summary: 1, lede: 1, body: 1}
    terms: [ceasefire, truce]
  - id: prisoners
    threshold: 1
    fields: {title: 1, summary: 1, lede: 1, body: 1}
    terms: [prisoner exchange]
"""
CHANNELS = ({"name": "desk", "url": "json://127.0.0.1:9/hook"},
            {"name": "mail", "url": "json://127.0.0.1:9/mail"})

WIRE = ("KYIV, Ukraine (AP) — Russia and Ukraine agreed on Tuesday to a ceasefire along the front line "
        "near Zaporizhzhia, officials in both capitals said, after three days of talks in Istanbul "
        "mediated by Turkey. The truce is to begin at midnight and will be monitored by observers "
        "from the OSCE, said Turkish foreign minister Hakan Fidan. Ukrainian president Volodymyr "
        "Zelenskyy said the agreement covered 42 towns and the Zaporizhzhia nuclear plant. Previous "
        "attempts at a local truce collapsed within days in 2022 and 2023, and both sides accused "
        "each other of shelling the plant's perimeter in the spring, the agency reported.")
HEADLINES = ["Russia and Ukraine agree ceasefire near Zaporizhzhia", "Truce deal reached in Istanbul talks",
             "Ceasefire to start at midnight, officials say", "Kyiv and Moscow agree front-line truce",
             "Turkey brokers ceasefire between Russia and Ukraine", "Zaporizhzhia truce: what we know",
             "OSCE to monitor new ceasefire", "Ceasefire covers 42 towns, Zelenskyy says",
             "Front-line truce agreed after Istanbul talks", "Ukraine ceasefire deal: key points"]
FOLLOW_UP = ("Russia and Ukraine will hold a prisoner exchange of 300 soldiers within a week of the "
             "ceasefire near Zaporizhzhia agreed in Istanbul on Tuesday, Turkish foreign minister Hakan "
             "Fidan said. The truce along the front line covers 42 towns and the Zaporizhzhia nuclear "
             "plant, and OSCE observers will monitor it from midnight, Volodymyr Zelenskyy said.")
UNRELATED = [
    ("Sudan's army and RSF sign ceasefire in Jeddah",
     "Sudan's army and the paramilitary Rapid Support Forces signed a seven-day ceasefire in Jeddah on "
     "Saturday, Saudi and US mediators said, to let aid convoys reach Khartoum and Darfur. Previous "
     "truces in Sudan's capital were broken within hours by artillery fire and air strikes."),
    ("Armenia and Azerbaijan agree border ceasefire",
     "Armenia and Azerbaijan agreed a ceasefire on their mountain border on Wednesday after clashes near "
     "Jermuk killed 49 soldiers, Armenian prime minister Nikol Pashinyan told parliament in Yerevan, "
     "crediting mediation by Moscow. Baku said the truce held overnight in the Lachin corridor."),
]
T0 = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)


def item(url: str, title: str, text: str, when: datetime) -> dict[str, str]:
    return {"title": title, "link": url, "guid": url, "description": text, "pubDate": format_datetime(when)}


def with_stories(pipeline: Pipeline) -> Pipeline:
    """The shipped default (``delivery.per_story: true``; the test base config turns it off)."""
    assert pipeline.config.delivery.per_story
    assert isinstance(pipeline.stories, LazyStoryKeeper)
    return pipeline


def match_alerts(config: Config) -> list[tuple[str, str]]:
    db = sqlite3.connect(config.database_path())
    try:
        return db.execute("SELECT channel, alert_key FROM alerts WHERE kind = 'match' ORDER BY id").fetchall()
    finally:
        db.close()


def test_a_wire_story_on_five_outlets_alerts_once_per_channel_then_one_follow_up(tmp_path: Path) -> None:
    sites = [Site().start() for _ in range(5)]
    try:
        feeds = []
        for number, site in enumerate(sites):
            items = [item(site.url(f"/story/{number}-{k}"), HEADLINES[number * 2 + k], WIRE,
                          T0 + timedelta(minutes=10 * (number * 2 + k))) for k in (0, 1)]
            if number == 4:  # two unrelated ceasefire stories on the same feed
                items += [item(site.url(f"/other/{k}"), title, text, T0 + timedelta(minutes=5 + k))
                          for k, (title, text) in enumerate(UNRELATED)]
            site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"},
                                        rss(items, title=f"Outlet {number}"))
            feeds.append(site.url("/feed.xml"))
        rules = write_rules(tmp_path, RULES)
        config = ConfigFactory(tmp_path).load(database="test.db", feeds=feeds, channels=CHANNELS,
                                              rules=[str(rules)], fetch={"fetch_articles": False},
                                              delivery={"per_story": True})
        pipeline = with_stories(build(config, real_matching=True))
        report = run(pipeline, pipeline.run_cycle())
        assert all(o.ok for o in report.outcomes), [o.error for o in report.outcomes]

        store = open_storage(config.database_path())
        stories = StoryRepository(store.connection).list_stories()
        wire = [s for s in stories if s.size == 10]
        assert len(wire) == 1 and wire[0].outlets == 5 and wire[0].topics == ("ceasefire",)
        assert sorted(s.size for s in stories) == [1, 1, 10]
        alerts = match_alerts(config)
        # The wire story once per channel, each unrelated story once per channel.
        assert len(alerts) == 3 * 2, alerts
        # Every story, the wire story and each unrelated one, once on each channel.
        for story in stories:
            assert sorted(ch for ch, key in alerts if key.startswith(f"story-{story.story_id}-")) == \
                ["desk", "mail"], (story, alerts)

        # A later article of the story with a new topic: one follow-up per channel; then another
        # article of it with nothing new: nothing.
        later = [item(sites[0].url("/story/late"), "Prisoner exchange to follow Zaporizhzhia ceasefire",
                      FOLLOW_UP, T0 + timedelta(hours=3)),
                 item(sites[0].url("/story/late2"), "Ceasefire holds along front line", WIRE,
                      T0 + timedelta(hours=4))]
        site = sites[0]
        site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, rss(later))
        pipeline = with_stories(build(config, real_matching=True))
        run(pipeline, pipeline.run_cycle())
        new = match_alerts(config)[len(alerts):]
        assert sorted(new) == [("desk", f"story-{wire[0].story_id}-desk-1-prisoners"),
                               ("mail", f"story-{wire[0].story_id}-mail-1-prisoners")]
        store.close()
    finally:
        for site in sites:
            site.stop()


def serve_wire_story(sites: list[Site]) -> list[str]:
    """The wire story twice on each of five feeds, two unrelated ceasefire stories on the last."""
    feeds = []
    for number, site in enumerate(sites):
        items = [item(site.url(f"/story/{number}-{k}"), HEADLINES[number * 2 + k], WIRE,
                      T0 + timedelta(minutes=10 * (number * 2 + k))) for k in (0, 1)]
        if number == 4:
            items += [item(site.url(f"/other/{k}"), title, text, T0 + timedelta(minutes=5 + k))
                      for k, (title, text) in enumerate(UNRELATED)]
        site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"},
                                    rss(items, title=f"Outlet {number}"))
        feeds.append(site.url("/feed.xml"))
    return feeds


def test_one_message_per_story_reaches_a_webhook_and_real_smtp(tmp_path: Path) -> None:
    """Through apprise to a loopback webhook and aiosmtpd: the wire story is one message per
    channel, each unrelated story one; the follow-up is one message naming what changed."""
    sites = [Site().start() for _ in range(5)]
    hook = Site(routes={"/hook": (200, {"Content-Type": "application/json"}, b"{}")}).start()
    mailbox = Mailbox().start()
    try:
        channels = [{"name": "desk", "url": f"json://127.0.0.1:{hook.port}/hook", "rate_limit": 0},
                    {"name": "mail", "rate_limit": 0,
                     "url": f"mailto://127.0.0.1:{mailbox.port}?from=newsmon@example.org&to=desk@example.org"
                            "&smtp=127.0.0.1"}]
        config = ConfigFactory(tmp_path).load(
            database="test.db", feeds=serve_wire_story(sites), channels=channels,
            rules=[str(write_rules(tmp_path, RULES))], fetch={"fetch_articles": False},
            delivery={"per_story": True, "timeout": "5s"})
        pipeline = with_stories(build(config, real_matching=True))
        run(pipeline, pipeline.run_cycle())
        store = open_storage(config.database_path())
        deliverer = Deliverer(config.channels, config.delivery)
        report = deliverer.deliver_due(store.outbox)
        assert report.errors == [] and report.messages == 6, report
        titles = [r.json()["title"] for r in hook.requests if r.method == "POST"]
        subjects = [str(m["subject"]) for m in mailbox.messages]
        for received in (titles, subjects):
            assert len(received) == 3, received
            assert sum(any(h in t for h in HEADLINES) for t in received) == 1  # the wire story: once
            assert all(t.startswith("[ceasefire] ") for t in received)
        wire_id = next(s.story_id for s in StoryRepository(store.connection).list_stories() if s.size == 10)
        stored = store.db.execute("SELECT DISTINCT story_id FROM alerts WHERE kind = 'match'").fetchall()
        assert len(stored) == 3 and (wire_id,) in stored  # alerts.story_id filled
        for message in mailbox.messages:  # plain part: one evidence sentence a line, no ** marks
            plain = message.get_body(preferencelist=("plain",))
            assert plain is not None
            lines = plain.get_content().splitlines()
            assert "**" not in plain.get_content()
            quoted = [line for line in lines if line.startswith(">")]
            assert len(quoted) >= 2 and all(line.count(">") == 1 for line in quoted), lines

        sites[0].routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, rss([
            item(sites[0].url("/story/late"), "Prisoner exchange to follow Zaporizhzhia ceasefire", FOLLOW_UP,
                 T0 + timedelta(hours=3))]))
        pipeline = with_stories(build(config, real_matching=True))
        run(pipeline, pipeline.run_cycle())
        report = deliverer.deliver_due(store.outbox)
        assert report.messages == 2, report
        follow_hook = [r.json() for r in hook.requests if r.method == "POST"][3:]
        follow_mail = mailbox.messages[3:]
        assert len(follow_hook) == 1 and len(follow_mail) == 1
        assert follow_hook[0]["title"].startswith("[prisoners] ")
        assert "Follow-up: new topic: prisoners" in follow_hook[0]["message"]
        mail_text = follow_mail[0].get_body(preferencelist=("plain", "html")).get_content()
        assert "new topic: prisoners" in mail_text
        assert str(follow_mail[0]["subject"]).startswith("[prisoners] ")
        assert deliverer.deliver_due(store.outbox).messages == 0
        store.close()
    finally:
        for server in (*sites, hook, mailbox):
            server.stop()
