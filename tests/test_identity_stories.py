"""Alert identity per story (pure): one alert per story and channel, a follow-up for a new
topic or (optionally) more outlets, and a first poll's backlog taken as seen."""

from __future__ import annotations

from collections.abc import Sequence

from monitor.identity import (
    ChannelStoryState,
    StoryAlertPolicy,
    StoryContext,
    backlog_poll,
    channel_story_states,
    plan_item,
    story_alert_key,
)
from monitor.models import TopicMatch

CEASEFIRE = TopicMatch(topic="ceasefire", score=3, threshold=2)
TALKS = TopicMatch(topic="negotiation", score=3, threshold=2)


def both(match: TopicMatch) -> Sequence[str]:
    return ["desk", "mail"]


def keys(plan) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.alert_key for m in plan.matches for a in m.alerts]


def test_without_a_story_alerts_stay_per_article() -> None:
    assert keys(plan_item(7, False, [CEASEFIRE], both)) == ["a7-ceasefire-desk", "a7-ceasefire-mail"]


def test_a_story_new_to_a_channel_alerts_once_per_topic_keyed_by_story() -> None:
    plan = plan_item(7, False, [CEASEFIRE, TALKS], both, story=StoryContext("12", outlets=1))
    assert keys(plan) == ["story-12-desk-0-ceasefire", "story-12-mail-0-ceasefire",
                          "story-12-desk-0-negotiation", "story-12-mail-0-negotiation"]
    assert {a.story_id for m in plan.matches for a in m.alerts} == {"12"}
    assert len(plan.matches) == 2  # the matches are stored either way


def test_a_later_article_of_an_alerted_story_alerts_only_for_what_is_new() -> None:
    told = {"desk": ChannelStoryState(topics=frozenset({"ceasefire"}), outlets=3, alerts=1)}
    same = plan_item(8, False, [CEASEFIRE], both, story=StoryContext("12", outlets=4, channels=told))
    assert keys(same) == ["story-12-mail-0-ceasefire"]  # mail never heard of it; desk did
    new_topic = plan_item(9, False, [CEASEFIRE, TALKS], both,
                          story=StoryContext("12", outlets=4, channels=told))
    assert keys(new_topic) == ["story-12-mail-0-ceasefire", "story-12-desk-1-negotiation",
                               "story-12-mail-0-negotiation"]


def test_more_outlets_give_one_follow_up_when_configured() -> None:
    told = {"desk": ChannelStoryState(topics=frozenset({"ceasefire"}), outlets=2, alerts=1)}
    route = lambda m: ["desk"]  # noqa: E731
    off = StoryContext("12", outlets=9, channels=told)
    assert keys(plan_item(9, False, [CEASEFIRE], route, story=off)) == []
    policy = StoryAlertPolicy(outlets_step=5)
    few = StoryContext("12", outlets=6, channels=told, policy=policy)
    assert keys(plan_item(9, False, [CEASEFIRE], route, story=few)) == []
    many = StoryContext("12", outlets=7, channels=told, policy=policy)
    assert keys(plan_item(9, False, [CEASEFIRE, TALKS], route, story=many)) == ["story-12-desk-1-negotiation"]
    assert keys(plan_item(9, False, [CEASEFIRE], route, story=many)) == ["story-12-desk-1-ceasefire"]


def test_channel_states_are_read_back_from_the_story_keys() -> None:
    rows = [("desk", "ceasefire", story_alert_key("5", "desk", 0, "ceasefire"), 1),
            ("desk", "negotiation", story_alert_key("5", "desk", 1, "negotiation"), 4),
            ("my-mail", "ceasefire", story_alert_key("5", "my-mail", 0, "ceasefire"), 1)]
    states = channel_story_states(rows, "5")
    assert states["desk"] == ChannelStoryState(frozenset({"ceasefire", "negotiation"}), outlets=4, alerts=2)
    assert states["my-mail"] == ChannelStoryState(frozenset({"ceasefire"}), outlets=1, alerts=1)


def test_a_known_article_and_a_first_poll_backlog_alert_nothing() -> None:
    assert plan_item(7, True, [CEASEFIRE], both, story=StoryContext("1", outlets=1)).matches == ()
    backlog = plan_item(7, False, [CEASEFIRE, TALKS], both, story=StoryContext("1", 1), first_poll=True)
    assert [m.match.topic for m in backlog.matches] == ["ceasefire", "negotiation"] and keys(backlog) == []
    assert backlog_poll(True, None, True) and not backlog_poll(False, None, True)
    assert not backlog_poll(True, False, True) and backlog_poll(True, True, False)
