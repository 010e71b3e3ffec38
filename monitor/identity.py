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
- A feed's first poll (``first_poll``): its items are stored and matched, and taken
  as seen without alerting (the backlog of a feed just added).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from monitor.models import FeedItem, TopicMatch

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


@dataclass(frozen=True, slots=True)
class PlannedAlert:
    channel: str
    alert_key: str
    story_id: str | None = None
    follow_up: int = 0  # 0: the story's first alert on the channel; n: its n-th follow-up


@dataclass(frozen=True, slots=True)
class StoryAlertPolicy:
    """When a story already alerted on a channel alerts again (besides a new topic)."""

    outlets_step: int | None = None  # this many more outlets than at the last alert: a follow-up


@dataclass(frozen=True, slots=True)
class ChannelStoryState:
    """What one channel has been told of one story (read from the story's outbox rows)."""

    topics: frozenset[str] = frozenset()
    outlets: int = 0  # the story's outlets at the channel's last alert of it
    alerts: int = 0  # the number of alerts so far (first + follow-ups): the next follow-up number


@dataclass(frozen=True, slots=True)
class StoryContext:
    """The story an article joined and what each channel already heard of it."""

    story_id: str
    outlets: int  # distinct outlets of the story, this article included
    channels: Mapping[str, ChannelStoryState] = field(default_factory=dict)
    policy: StoryAlertPolicy = StoryAlertPolicy()


def channel_story_states(alerts: Sequence[tuple[str, str, str, int]], story_id: str
                         ) -> dict[str, ChannelStoryState]:
    """Per channel, from a story's outbox rows given as (channel, topic, alert key, outlets then)."""
    grouped: dict[str, list[tuple[str, int, int]]] = {}
    for channel, topic, key, outlets in alerts:
        prefix = f"story-{story_id}-{channel}-"
        number_text = key[len(prefix):].split("-", 1)[0] if key.startswith(prefix) else ""
        number = int(number_text) if number_text.isdigit() else 0
        grouped.setdefault(channel, []).append((topic, number, outlets))
    states = {}
    for channel, rows in grouped.items():
        last = max(number for _, number, _ in rows)
        states[channel] = ChannelStoryState(
            topics=frozenset(topic for topic, _, _ in rows),
            outlets=max(outlets for _, number, outlets in rows if number == last),
            alerts=last + 1)
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
    for position, match in enumerate(matches):
        for channel in route(match):
            by_channel.setdefault(channel, []).append(position)
    for channel, positions in by_channel.items():
        for position, number in _story_alerts(story, channel, [matches[p].topic for p in positions]):
            topic = matches[positions[position]].topic
            per_match[positions[position]].append(PlannedAlert(
                channel, story_alert_key(story.story_id, channel, number, topic), story.story_id, number))
    return ItemPlan(tuple(PlannedMatch(match, tuple(alerts))
                          for match, alerts in zip(matches, per_match, strict=True)))


def _story_alerts(story: StoryContext, channel: str, topics: Sequence[str]) -> list[tuple[int, int]]:
    """Which of an article's topics (by position) alert on ``channel``, and the follow-up number."""
    state = story.channels.get(channel)
    if state is None:  # the channel has not heard of the story: its first alert, every topic
        return [(position, 0) for position in range(len(topics))]
    new_topics = [p for p, topic in enumerate(topics) if topic not in state.topics]
    if new_topics:
        return [(position, state.alerts) for position in new_topics]
    step = story.policy.outlets_step
    if step is not None and topics and story.outlets >= state.outlets + step:
        return [(0, state.alerts)]  # one follow-up: "now reported by N outlets"
    return []


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
