"""Story assignment: same event from two outlets joins; same topic a week apart does not; the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.stories.clustering import InMemoryStoryIndex, InMemoryTermStatistics, StoryAssigner
from monitor.stories.features import extract_features

T0 = datetime(2031, 3, 4, 9, 0, tzinfo=UTC)

HARBOUR_A = (
    "Fire crews in the port of Quellin fought a blaze at the grain terminal through the night after "
    "an explosion in a silo on Tuesday evening. The harbour authority said two workers were injured and "
    "taken to the Saint Oda hospital. Ships were ordered away from the eastern quay while firefighters "
    "cooled the neighbouring silos. The cause of the explosion is not yet known, officials said."
)
HARBOUR_B = (
    "An explosion tore through a grain silo at Quellin's harbour late on Tuesday, injuring two dock "
    "workers and setting the terminal ablaze. Firefighters spent the night keeping the flames from "
    "spreading to nearby silos, and vessels were moved from the eastern quay. The harbour authority "
    "said investigators would examine the site once the fire was out."
)
HARBOUR_WEEK_LATER = (
    "The grain terminal at Quellin's harbour reopened on Wednesday with new safety rules for silo "
    "ventilation. The harbour authority said inspectors had approved the eastern quay for ships again "
    "and that the two injured dock workers had left hospital."
)
BRIDGE = (
    "The new cable-stayed bridge over the Marrow estuary opened to traffic on Tuesday, cutting the drive "
    "between Dunhollow and Pellmouth by forty minutes. The transport minister, Arno Vell, cut the ribbon "
    "as a brass band played. Tolls will be waived for the first month."
)


def make_assigner(clock_time: datetime | None = None) -> tuple[StoryAssigner, InMemoryStoryIndex]:
    index = InMemoryStoryIndex()
    statistics = InMemoryTermStatistics()
    # A small background corpus so that IDF knows common words are common.
    for text in (BRIDGE, "The weather was mild and the markets were calm on Tuesday.",
                 "Officials said the meeting would take place next month in the capital."):
        statistics.add_document(extract_features("bg", "", text).body_terms)
    return StoryAssigner(index, statistics, clock=lambda: clock_time or T0), index


def test_same_event_from_two_outlets_joins_one_story() -> None:
    assigner, index = make_assigner()
    first = assigner.assign(extract_features("a1", "Explosion and fire at Quellin grain terminal", HARBOUR_A,
                                             source="Coast Herald", published=T0), now=T0)
    second = assigner.assign(extract_features("a2", "Silo blast injures two at Quellin harbour | Daily Wire",
                                              HARBOUR_B, source="Daily Wire",
                                              published=T0 + timedelta(hours=3)),
                             now=T0 + timedelta(hours=3))
    assert first.is_new_story and not second.is_new_story
    assert second.story_id == first.story_id
    assert second.new_outlet and second.near_dup_of is None and second.changed_materially
    story = index.story(first.story_id)
    assert story is not None
    assert story.member_ids == ["a1", "a2"] and story.outlets == ["Coast Herald", "Daily Wire"]
    assert story.first_seen == T0 and story.last_seen == T0 + timedelta(hours=3)
    assert "| Daily Wire" not in story.label


def test_unrelated_event_on_the_same_day_opens_its_own_story() -> None:
    assigner, _ = make_assigner()
    harbour = assigner.assign(extract_features("a1", "Explosion at Quellin grain terminal", HARBOUR_A,
                                               published=T0), now=T0)
    bridge = assigner.assign(extract_features("a2", "Marrow estuary bridge opens", BRIDGE, published=T0),
                             now=T0)
    assert bridge.is_new_story and bridge.story_id != harbour.story_id


def test_same_topic_a_week_later_is_a_new_story() -> None:
    assigner, _ = make_assigner()
    first = assigner.assign(extract_features("a1", "Explosion at Quellin grain terminal", HARBOUR_A,
                                             published=T0), now=T0)
    later = T0 + timedelta(days=7)
    again = assigner.assign(extract_features("a2", "Quellin grain terminal reopens", HARBOUR_WEEK_LATER,
                                             published=later), now=later)
    assert again.is_new_story and again.story_id != first.story_id


def test_window_uses_the_injected_clock_when_there_is_no_published_date() -> None:
    assigner, _ = make_assigner()
    first = assigner.assign(extract_features("a1", "Explosion at Quellin grain terminal", HARBOUR_A), now=T0)
    # The same text seen a week later by the clock, undated: too late to join.
    late_clock = T0 + timedelta(days=7)
    late_assigner = StoryAssigner(assigner.index, assigner.statistics, clock=lambda: late_clock)
    late = late_assigner.assign(extract_features("a2", "Silo blast at Quellin harbour", HARBOUR_B))
    assert late.is_new_story and late.story_id != first.story_id
    # Seen within hours (the clock again), it joins.
    soon = T0 + timedelta(hours=5)
    soon_assigner = StoryAssigner(assigner.index, assigner.statistics, clock=lambda: soon)
    joined = soon_assigner.assign(extract_features("a3", "Silo blast at Quellin harbour", HARBOUR_B))
    assert joined.story_id == first.story_id


def test_published_date_far_in_the_future_is_not_believed() -> None:
    assigner, _ = make_assigner()
    features = extract_features("a1", "Explosion at Quellin grain terminal", HARBOUR_A,
                                published=T0 + timedelta(days=30))
    assert assigner.event_time(features, T0) == T0


def test_wire_copy_under_a_new_headline_joins_and_points_to_the_original() -> None:
    assigner, _ = make_assigner()
    original = assigner.assign(extract_features("a1", "Explosion at Quellin grain terminal", HARBOUR_A,
                                                source="Wire", published=T0), now=T0)
    copy = assigner.assign(extract_features("a2", "Night of fire on the docks", "QUELLIN (AP) — " + HARBOUR_A,
                                            source="Republisher", published=T0), now=T0)
    assert copy.story_id == original.story_id
    assert copy.near_dup_of == "a1" and not copy.changed_materially


def test_stories_older_than_the_window_are_pruned_from_the_index() -> None:
    assigner, index = make_assigner()
    assigner.assign(extract_features("a1", "Explosion at Quellin grain terminal", HARBOUR_A, published=T0),
                    now=T0)
    assert index.prune(T0 + timedelta(days=5)) == 1
    assert index.article("a1") is None and len(index) == 0
