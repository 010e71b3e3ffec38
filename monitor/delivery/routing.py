"""Which channels a match goes to, decided before the match is stored.

The outbox row for each channel is written in the same transaction as the
match, so routing must be known at store time.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.config import SEVERITY_RANK, ChannelConfig
from monitor.models import TopicMatch

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
