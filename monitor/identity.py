"""What makes two items one story, and one alert one alert (base layer, pure).

- Article identity: the canonical URL (tracking parameters already dropped by
  the parser), else the title+summary content hash. The same story from two
  feeds is one article.
- Alert identity: one alert per (article, topic, channel); a notice is one per
  (event key, channel).
- The write decision: an article already stored gets the new item row only,
  no second match and no second alert. Storage runs ``plan_item`` inside its
  item transaction, on what it found stored, and writes exactly the plan.
- Stories (``StoryContext``, given when the story engine placed the article): a
  channel hears of a story once, keyed ``story-<id>-<channel>-<n>-<topic>``; a later
  article of the story alerts again (follow-up ``n`` + 1) only when it brings a topic
  the channel was not told of for that story, or, if ``StoryAlertPolicy.outlets_step``
  is set, when the story has that many more outlets than at the channel's last alert.
  ``StoryAlertPolicy`` also chooses whether a new number or actor in the evidence
  (``on_new_facts``) or a burst of the story or its topic (``on_burst``) makes a follow-up;
  a follow-up's note says what changed ("new topic: …; now reported by 7 outlets; new in
  the evidence: 300, Hakan Fidan").
- Bursts (``StoryContext.burst``, decided by ``monitor.stories.bursts``): the alert's severity
  is raised one step before routing, so a louder channel can take it, and its note says so.
- A feed's first poll (``first_poll``): its items are stored and matched, and taken
  as seen without alerting (the backlog of a feed just added).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from monitor.config import SEVERITY_RANK
from monitor.models import EvidenceSentence, FeedItem, TopicMatch

Route = Callable[[TopicMatch], Sequence[str]]  # a match → the channels it goes to


def article_key(item: FeedItem) -> str:
    """One story, one article: its canonical URL, else its content hash."""
    if item.canonical_url:
        return "url:" + item.canonical_url
    return "hash:" + item.content_hash


def alert_key(article_id: int, topic: str, channel: str) -> str:
    return f"a{article_id}-{topic}-{channel}"


def notice_alert_key(key: str, channel: str) -> str:
    """A daemon-health notice's outbox key: one per event key and channel."""
    return f"n-{key}-{channel}"


def story_alert_key(story_id: str, channel: str, number: int, topic: str) -> str:
    """A story's alert on a channel: ``number`` 0 is the first, 1.. the follow-ups."""
    return f"story-{story_id}-{channel}-{number}-{topic}"


def story_alert_number(alert_key: str, story_id: str, channel: str) -> int | None:
    """The follow-up number of a story alert key (``story_alert_key``), None for another key."""
    prefix = f"story-{story_id}-{channel}-"
    number_text = alert_key[len(prefix):].split("-", 1)[0] if alert_key.startswith(prefix) else ""
    return int(number_text) if number_text.isdigit() else None


SEVERITIES = tuple(sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__))  # low → critical
BURST_NOTE = "burst:"  # how a burst's note begins (an escalated alert is recognised by it)


def raised_severity(severity: str) -> str:
    """One step louder (``critical`` stays)."""
    rank = SEVERITIES.index(severity) if severity in SEVERITIES else 1
    return SEVERITIES[min(rank + 1, len(SEVERITIES) - 1)]


@dataclass(frozen=True, slots=True)
class PlannedAlert:
    channel: str
    alert_key: str
    story_id: str | None = None
    follow_up: int = 0  # 0: the story's first alert on the channel; n: its n-th follow-up
    note: str = ""  # why a story alert goes out (what changed, a burst): stored as the row's body
    severity: str | None = None  # the alert's own severity when raised (a burst); None: the match's


@dataclass(frozen=True, slots=True)
class StoryAlertPolicy:
    """When a story already alerted on a channel alerts again: a new topic, more outlets,
    a new number or actor in the evidence, a burst (each switchable)."""

    outlets_step: int | None = None  # this many more outlets than at the last alert: a follow-up
    on_new_topic: bool = True  # a topic the channel was not told of for the story
    on_new_facts: bool = False  # a number or a named actor not in the evidence sent so far
    on_burst: bool = True  # the story or its topic bursts (and the channel's alerts were not escalated)


@dataclass(frozen=True, slots=True)
class StoryBurst:
    """A burst found by ``monitor.stories.bursts``: the alert is escalated and says why."""

    note: str  # "burst: 9 articles in the last hour, baseline 1.2/h"


@dataclass(frozen=True, slots=True)
class ChannelStoryState:
    """What one channel has been told of one story (read from the story's outbox rows)."""

    topics: frozenset[str] = frozenset()
    outlets: int = 0  # the story's outlets at the channel's last alert of it
    alerts: int = 0  # the number of alerts so far (first + follow-ups): the next follow-up number
    facts: frozenset[str] = frozenset()  # numbers and actors of the evidence sent (``evidence_facts``)
    burst: bool = False  # an alert of the story was already escalated for a burst


@dataclass(frozen=True, slots=True)
class StoryContext:
    """The story an article joined and what each channel already heard of it."""

    story_id: str
    outlets: int  # distinct outlets of the story, this article included
    channels: Mapping[str, ChannelStoryState] = field(default_factory=dict)
    policy: StoryAlertPolicy = StoryAlertPolicy()
    burst: StoryBurst | None = None  # the story or its topic is bursting now


@dataclass(frozen=True, slots=True)
class ToldAlert:
    """One outbox row of a story as ``channel_story_states`` reads it."""

    channel: str
    topic: str
    alert_key: str
    outlets: int  # the story's outlets when the alerted article joined
    evidence: tuple[str, ...] = ()  # the evidence sentences it carried (plain text)
    note: str = ""


_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*(?![\w])")
_NAME = re.compile(r"\b[A-Z][\w'’-]+(?:\s+(?:[A-Z][\w'’-]+|de|al|bin|von|van))*\b")
_NOT_ACTORS = frozenset((
    "the", "a", "an", "in", "on", "at", "of", "and", "but", "for", "to", "it", "its", "this", "that",
    "these", "those", "he", "she", "they", "we", "his", "her", "their", "monday", "tuesday", "wednesday",
    "thursday", "friday", "saturday", "sunday", "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december"))


def evidence_facts(sentences: Iterable[str]) -> frozenset[str]:
    """The numbers and named actors in evidence sentences, lower-cased: what a follow-up can
    name as new ("300", "hakan fidan"). A capitalised word opening a sentence counts only as
    part of a longer name; weekdays, months and function words never."""
    return frozenset(fact_forms(sentences))


def fact_forms(sentences: Iterable[str]) -> dict[str, str]:
    """``evidence_facts`` with each fact as first written ("hakan fidan" → "Hakan Fidan")."""
    facts: dict[str, str] = {}
    for sentence in sentences:
        for m in _NUMBER.finditer(sentence):
            facts.setdefault(m.group(0).replace(",", ""), m.group(0))
        for m in _NAME.finditer(sentence):
            words = [w for w in m.group(0).split() if w.lower() not in _NOT_ACTORS]
            opening = not sentence[:m.start()].strip()
            if not words or (opening and len(words) < 2):
                continue
            facts.setdefault(" ".join(words).lower(), " ".join(words))
    return facts


def _evidence_text(evidence: Iterable[EvidenceSentence]) -> list[str]:
    return [e.text for e in evidence]


def channel_story_states(alerts: Sequence[tuple[str, str, str, int] | ToldAlert], story_id: str
                         ) -> dict[str, ChannelStoryState]:
    """Per channel, from a story's outbox rows (``ToldAlert``, or (channel, topic, alert key,
    outlets then))."""
    grouped: dict[str, list[tuple[ToldAlert, int]]] = {}
    for row in alerts:
        told = row if isinstance(row, ToldAlert) else ToldAlert(*row)
        number = story_alert_number(told.alert_key, story_id, told.channel) or 0
        grouped.setdefault(told.channel, []).append((told, number))
    states = {}
    for channel, rows in grouped.items():
        last = max(number for _, number in rows)
        states[channel] = ChannelStoryState(
            topics=frozenset(told.topic for told, _ in rows),
            outlets=max(told.outlets for told, number in rows if number == last),
            alerts=last + 1,
            facts=evidence_facts(sentence for told, _ in rows for sentence in told.evidence),
            burst=any(told.note.startswith(BURST_NOTE) or f"; {BURST_NOTE}" in told.note
                      for told, _ in rows))
    return states


@dataclass(frozen=True, slots=True)
class PlannedMatch:
    match: TopicMatch
    alerts: tuple[PlannedAlert, ...]


@dataclass(frozen=True, slots=True)
class ItemPlan:
    """The match and outbox rows one item write adds beside its item row."""

    matches: tuple[PlannedMatch, ...] = ()


# Called by storage inside the item's transaction: (article id, was it already stored).
ItemPlanner = Callable[[int, bool], ItemPlan]


def plan_item(article_id: int, known: bool, matches: Sequence[TopicMatch], route: Route, *,
              story: StoryContext | None = None, first_poll: bool = False) -> ItemPlan:
    """A known article gets nothing new; a new one its matches, each routed.

    ``first_poll``: the matches are stored without alerts (the feed's backlog).
    ``story``: alerts are per story and channel (module doc), not per article.
    """
    if known:
        return ItemPlan()
    if first_poll:
        return ItemPlan(tuple(PlannedMatch(match, ()) for match in matches))
    if story is None:
        return ItemPlan(tuple(
            PlannedMatch(match, tuple(PlannedAlert(channel, alert_key(article_id, match.topic, channel))
                                      for channel in route(match)))
            for match in matches))
    per_match: list[list[PlannedAlert]] = [[] for _ in matches]
    by_channel: dict[str, list[int]] = {}
    # A burst raises the severity before routing: a channel for louder alerts may take it.
    routed = [replace(m, severity=raised_severity(m.severity)) if story.burst else m for m in matches]
    for position, match in enumerate(routed):
        for channel in route(match):
            by_channel.setdefault(channel, []).append(position)
    for channel, positions in by_channel.items():
        chosen, number, note = _story_alerts(story, channel, [matches[p] for p in positions])
        for position in chosen:
            original = positions[position]
            topic = matches[original].topic
            per_match[original].append(PlannedAlert(
                channel, story_alert_key(story.story_id, channel, number, topic), story.story_id, number,
                note=note, severity=routed[original].severity if story.burst else None))
    return ItemPlan(tuple(PlannedMatch(match, tuple(alerts))
                          for match, alerts in zip(matches, per_match, strict=True)))


def _story_alerts(story: StoryContext, channel: str, matches: Sequence[TopicMatch]
                  ) -> tuple[list[int], int, str]:
    """Which of an article's matches (by position) alert on ``channel``, the follow-up number,
    and the note saying why (what changed; a burst)."""
    burst = story.burst.note if story.burst else ""
    state = story.channels.get(channel)
    if state is None:  # the channel has not heard of the story: its first alert, every topic
        return list(range(len(matches))), 0, burst
    policy = story.policy
    new_topics = [p for p, match in enumerate(matches) if match.topic not in state.topics]
    forms = [fact_forms(_evidence_text(m.evidence)) for m in matches]
    facts = [[shown for fact, shown in found.items() if fact not in state.facts] for found in forms]
    more_outlets = story.outlets > state.outlets
    step = policy.outlets_step
    if new_topics and policy.on_new_topic:
        chosen = new_topics
    elif step is not None and matches and story.outlets >= state.outlets + step:
        chosen = [0]  # one follow-up: "now reported by N outlets"
    elif policy.on_new_facts and any(facts):
        chosen = [next(p for p, found in enumerate(facts) if found)]
    elif policy.on_burst and story.burst and not state.burst and matches:
        chosen = [0]
    else:
        return [], 0, ""
    changes: list[str] = []
    if new_topics:
        changes.append(("new topic: " if len(new_topics) == 1 else "new topics: ")
                       + ", ".join(matches[p].topic for p in new_topics))
    if more_outlets:
        changes.append(f"now reported by {story.outlets} outlets")
    new_facts = list(dict.fromkeys(fact for p in chosen for fact in facts[p]))
    if new_facts:
        changes.append("new in the evidence: " + ", ".join(new_facts[:6])
                       + (f" and {len(new_facts) - 6} more" if len(new_facts) > 6 else ""))
    note = "; ".join(["follow-up: " + "; ".join(changes) if changes else "follow-up", *([burst] if burst
                                                                                         else [])])
    return chosen, state.alerts, note


def backlog_poll(never_polled: bool, feed_setting: bool | None, default: bool) -> bool:
    """Whether this poll's new items are a backlog taken as seen: the feed's first successful
    poll, with ``backlog_as_seen`` on (the feed's own setting, else ``fetch.backlog_as_seen``)."""
    return never_polled and (default if feed_setting is None else feed_setting)


def item_planner(matches: Sequence[TopicMatch], route: Route, *, story: StoryContext | None = None,
                 first_poll: bool = False) -> ItemPlanner:
    """``plan_item`` bound to one item's matches, routing and story, for storage to call."""
    def plan(article_id: int, known: bool) -> ItemPlan:
        return plan_item(article_id, known, matches, route, story=story, first_poll=first_poll)
    return plan


def no_channels(match: TopicMatch) -> Sequence[str]:
    """A route to nowhere: matches are stored without outbox rows."""
    return ()
