"""HTTP header times, read one way for every stage (fetch, polling, delivery)."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime


def http_date(value: str | None) -> datetime | None:
    """An HTTP-date (``Expires``, ``Retry-After``) as an aware datetime, or None."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    Not capped: each caller applies the cap that fits its job. None when the
    value is absent or unreadable; a date in the past gives 0.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    when = http_date(value)
    if when is None:
        return None
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
