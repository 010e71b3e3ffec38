"""Alert identity per story (pure): one alert per story and channel, a follow-up for a new
topic or (optionally) more outlets or new facts, saying what changed; a burst escalated;
a first poll's backlog taken as seen."""

from __future__ import annotations

from collections.abc import Sequence

from monitor.identity import (
    ChannelStoryState,
    StoryAlertPolicy,
    StoryBurst,
    StoryContext,
    ToldAlert,
    backlog_poll,
    channel_story_states,
    evidence_facts,
    plan_item,
    story_alert_key,
)
from monitor.models import EvidenceSentence, TopicMatch

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


FIDAN = EvidenceSentence("body", "A prisoner exchange of 300 soldiers was agreed, Hakan Fidan said.",
                         "A **prisoner exchange** of 300 soldiers was agreed, Hakan Fidan said.")


def notes(plan) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.note for m in plan.matches for a in m.alerts]


def test_a_follow_up_says_what_changed() -> None:
    told = {"desk": ChannelStoryState(topics=frozenset({"ceasefire"}), outlets=3, alerts=1,
                                      facts=frozenset({"42"}))}
    route = lambda m: ["desk"]  # noqa: E731
    prisoners = TopicMatch(topic="prisoners", score=3, threshold=2, evidence=(FIDAN,))
    plan = plan_item(9, False, [CEASEFIRE, prisoners], route,
                     story=StoryContext("12", outlets=7, channels=told))
    assert keys(plan) == ["story-12-desk-1-prisoners"]
    assert notes(plan) == ["follow-up: new topic: prisoners; now reported by 7 outlets;"
                           " new in the evidence: 300, Hakan Fidan"]
    first = plan_item(3, False, [CEASEFIRE], route, story=StoryContext("12", outlets=1))
    assert first.matches[0].alerts[0].note == ""  # a first alert needs no why


def test_new_facts_make_a_follow_up_only_when_configured() -> None:
    told = {"desk": ChannelStoryState(topics=frozenset({"ceasefire"}), outlets=3, alerts=2,
                                      facts=evidence_facts(["Talks began, Hakan Fidan said."]))}
    route = lambda m: ["desk"]  # noqa: E731
    with_fact = TopicMatch(topic="ceasefire", score=3, threshold=2, evidence=(FIDAN,))
    assert keys(plan_item(9, False, [with_fact], route, story=StoryContext("12", 3, told))) == []
    policy = StoryAlertPolicy(on_new_facts=True)
    plan = plan_item(9, False, [with_fact], route, story=StoryContext("12", 3, told, policy=policy))
    assert keys(plan) == ["story-12-desk-2-ceasefire"]
    assert notes(plan) == ["follow-up: new in the evidence: 300"]
    same = TopicMatch(topic="ceasefire", score=3, threshold=2,
                      evidence=(EvidenceSentence("body", "Hakan Fidan spoke.", "Hakan Fidan spoke."),))
    assert keys(plan_item(9, False, [same], route, story=StoryContext("12", 3, told, policy=policy))) == []
    no_topics = StoryAlertPolicy(on_new_topic=False)
    assert keys(plan_item(9, False, [TALKS], route,
                          story=StoryContext("12", 3, told, policy=no_topics))) == []


def test_evidence_facts_are_numbers_and_named_actors() -> None:
    facts = evidence_facts(["Russia and Ukraine will swap 1,200 prisoners, Turkish minister Hakan Fidan said"
                            " on Tuesday in Istanbul.", "The truce covers 42 towns."])
    assert facts == {"1200", "ukraine", "turkish", "hakan fidan", "istanbul", "42"}


def test_a_burst_raises_the_severity_before_routing_and_says_so() -> None:
    loud = lambda m: ["desk", "pager"] if m.severity in ("high", "critical") else ["desk"]  # noqa: E731
    burst = StoryBurst("burst: 9 articles in the last hour, baseline 1.2/h")
    plan = plan_item(7, False, [CEASEFIRE], loud, story=StoryContext("12", outlets=4, burst=burst))
    alerts = plan.matches[0].alerts
    assert [(a.channel, a.severity, a.note) for a in alerts] == [("desk", "high", burst.note),
                                                                 ("pager", "high", burst.note)]
    assert plan.matches[0].match.severity == "normal"  # the match row keeps its own severity
    # A channel told of the story hears of the burst once, as a follow-up.
    told = {"desk": ChannelStoryState(topics=frozenset({"ceasefire"}), outlets=4, alerts=1)}
    again = plan_item(8, False, [CEASEFIRE], lambda m: ["desk"],
                      story=StoryContext("12", 4, told, burst=burst))
    assert keys(again) == ["story-12-desk-1-ceasefire"] and notes(again) == [f"follow-up; {burst.note}"]
    escalated = {"desk": ChannelStoryState(topics=frozenset({"ceasefire"}), outlets=4, alerts=2, burst=True)}
    assert keys(plan_item(9, False, [CEASEFIRE], lambda m: ["desk"],
                          story=StoryContext("12", 4, escalated, burst=burst))) == []
    key = story_alert_key("12", "desk", 0, "ceasefire")
    told_row = ToldAlert("desk", "ceasefire", key, 4, ("Talks in Istanbul.",), burst.note)
    states = channel_story_states([told_row], "12")
    assert states["desk"].burst and states["desk"].facts == {"istanbul"}
