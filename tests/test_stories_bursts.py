"""Bursts (pure): a story or topic far above its baseline rate, with the clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.stories.bursts import Burst, BurstPolicy, judge, strongest

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def spread(count: int, start: datetime, end: datetime) -> list[datetime]:
    step = (end - start) / count
    return [start + step * (i + 0.5) for i in range(count)]


def test_nine_in_the_last_hour_over_a_quiet_day_is_a_burst_and_says_so() -> None:
    seen = spread(28, NOW - 25 * HOUR, NOW - HOUR) + spread(8, NOW - HOUR, NOW)  # + the one arriving
    burst = judge(seen, NOW - 30 * HOUR, NOW)
    assert burst == Burst("story", 9, 28 / 24, HOUR)
    assert burst is not None and burst.note == "burst: 9 articles in the last hour, baseline 1.2/h"


def test_a_steady_rate_a_small_count_or_a_young_story_is_no_burst() -> None:
    steady = spread(24 * 8, NOW - 25 * HOUR, NOW - HOUR) + spread(8, NOW - HOUR, NOW)
    assert judge(steady, NOW - 30 * HOUR, NOW) is None  # 9 an hour against 8 an hour
    few = spread(4, NOW - HOUR, NOW)
    assert judge(few, NOW - 30 * HOUR, NOW) is None  # 5 is under min_articles
    young = spread(20, NOW - HOUR, NOW)
    assert judge(young, NOW - 2 * HOUR, NOW) is None  # no baseline before min_history
    assert judge([], None, NOW) is None
    assert judge(young, NOW - 2 * HOUR, NOW, policy=BurstPolicy(min_history=timedelta(0))) is not None


def test_the_baseline_is_taken_over_the_span_the_subject_existed() -> None:
    # 18 articles in the 6 h of its life before the last hour: 3/h; 9 now is not 4x that.
    seen = spread(18, NOW - 7 * HOUR, NOW - HOUR) + spread(8, NOW - HOUR, NOW)
    assert judge(seen, NOW - 7 * HOUR, NOW) is None
    assert judge(seen, NOW - 7 * HOUR, NOW, policy=BurstPolicy(factor=3)) is not None
    # Old articles before the baseline span do not count.
    ancient = spread(500, NOW - 90 * HOUR, NOW - 30 * HOUR) + spread(8, NOW - HOUR, NOW)
    assert judge(ancient, NOW - 90 * HOUR, NOW) is not None


def test_a_topic_burst_names_its_topic_and_the_story_is_preferred() -> None:
    topic = Burst("topic ceasefire", 14, 2.0, HOUR)
    assert topic.note == "burst: 14 articles in the last hour, baseline 2.0/h (topic ceasefire)"
    story = Burst("story", 7, 0.5, HOUR)
    assert strongest([None, topic, story]) is story and strongest([topic, None]) is topic
    assert strongest([None]) is None
    assert Burst("story", 7, 0.5, timedelta(minutes=30)).note == \
        "burst: 7 articles in the last 30 min, baseline 0.5/30 min"
