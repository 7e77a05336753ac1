"""Timestamps as every backend stores them: naive UTC datetimes.

Objects carry ``metadata.creationTimestamp`` as RFC 3339 text; searches compare it with
``since``/``before`` (``Search``, naive UTC) and tombstones expire by the time they were written.
"""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    """Now, naive UTC (as every stored time)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def parse_timestamp(value: str) -> dt.datetime | None:
    """RFC 3339 (``2024-05-01T10:00:00Z``) -> naive UTC; None when empty or malformed."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed
