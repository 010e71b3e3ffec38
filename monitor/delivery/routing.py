"""Which channels a match goes to, decided before the match is stored.

The outbox row for each channel is written in the same transaction as the
match, so routing must be known at store time. ``routing_problems`` (run by
``newsmon check`` and at start-up and reload) refuses names that point
nowhere, so no alert is routed into the void by a typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from monitor.config import SEVERITY_RANK, ChannelConfig
from monitor.errors import ConfigError
from monitor.models import TopicMatch
from monitor.yamlfile import load_yaml_file, locate

# With no channel configured, alerts still go somewhere: the log (and the database).
LOG_CHANNEL = "log"


def route(match: TopicMatch, channels: Sequence[ChannelConfig]) -> list[str]:
    """Channel names for ``match``.

    A topic's own ``channels:`` list narrows the candidates; a channel's
    ``topics:`` filter and ``min_severity`` then apply. Admin channels get
    daemon health, not topic alerts.
    """
    alerting = [c for c in channels if not c.admin]
    if not alerting:
        return [LOG_CHANNEL]
    if match.channels:
        alerting = [c for c in alerting if c.name in match.channels]
    rank = SEVERITY_RANK.get(match.severity, 1)
    return [
        c.name for c in alerting
        if (c.topics is None or match.topic in c.topics)
        and rank >= SEVERITY_RANK[c.min_severity]
    ]


def admin_channels(channels: Sequence[ChannelConfig]) -> list[str]:
    """Where daemon-health notices go: the admin channels, else the log."""
    return [c.name for c in channels if c.admin] or [LOG_CHANNEL]


# --- routing checks (``newsmon check`` and start-up) --------------------------------


class RoutedTopic(Protocol):
    """What the routing check reads of a rule topic (``rules.ruleset.Topic``)."""

    id: str
    severity: str
    channels: tuple[str, ...]

    @property
    def where(self) -> str: ...


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _known(names: Iterable[str]) -> str:
    listed = ", ".join(sorted(names))
    return f"known: {listed}" if listed else "none is configured"


def routing_problems(topics: Sequence[RoutedTopic], channels: Sequence[ChannelConfig],
                     config_source: Path | None = None) -> list[ConfigError]:
    """Every routing name that points nowhere: a topic's ``channels:`` naming no
    configured channel, a channel's ``topics:`` naming no rule topic. Each error
    names the file and line, and the nearest known name."""
    problems: list[ConfigError] = []
    channel_names = {c.name for c in channels}
    topic_ids = {t.id for t in topics}
    for topic in topics:
        for name in topic.channels:
            if name in channel_names:
                continue
            path, _, line = topic.where.rpartition(":")
            if not line.isdigit():
                path, line = topic.where, ""
            problems.append(ConfigError(
                f"topic {topic.id} routes to channel {name}, which is not configured"
                f"{_did_you_mean(name, channel_names)}; {_known(channel_names)}",
                path=path, line=int(line) if line else None, key="channels"))
    doc = None
    if config_source is not None and Path(config_source).is_file():
        try:
            doc = load_yaml_file(Path(config_source))
        except ConfigError:
            doc = None
    for index, channel in enumerate(channels):
        for position, topic_id in enumerate(channel.topics or ()):
            if topic_id in topic_ids:
                continue
            row: int | None = None
            col: int | None = None
            if doc is not None:
                row, col = locate(doc.data, ("channels", index, "topics", position))
            problems.append(ConfigError(
                f"channel {channel.name} lists topic {topic_id}, which no rule file defines"
                f"{_did_you_mean(topic_id, topic_ids)}",
                path=config_source, line=row, col=col, key=f"channels.{index}.topics"))
    return problems


def unrouted_topics(topics: Sequence[RoutedTopic], channels: Sequence[ChannelConfig]) -> list[str]:
    """Topics whose matches no configured channel would receive (each channel's
    ``topics:`` and ``min_severity`` considered): they are stored, never alerted."""
    if not [c for c in channels if not c.admin]:
        return []  # no alerting channel: everything goes to the log
    lost = []
    for topic in topics:
        probe = _Probe(topic.id, topic.severity, tuple(topic.channels))
        if not route(probe, channels):  # type: ignore[arg-type]  # a probe TopicMatch built for the check
            lost.append(topic.id)
    return lost


@dataclass(frozen=True, slots=True)
class _Probe:
    """A stand-in match: what ``route`` reads of one."""

    topic: str
    severity: str
    channels: tuple[str, ...]
