"""Deadlines in whole days, counted as Korean law counts them, shown in Asia/Seoul.

Civil Act Art. 157: the day of receipt is not counted; Art. 159: a period ends when its last day
ends. A request received on 26 November (KST) with 10 days is due at the end of 6 December KST.
Public holidays (Art. 161) are not skipped: the deadline is never later than the law's.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

END_OF_DAY = time(23, 59, 59)


@lru_cache(maxsize=8)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(at: datetime, tz: str) -> date:
    return at.astimezone(zone(tz)).date()


def end_of_local_day(day: date, tz: str) -> datetime:
    """23:59:59 of ``day`` in ``tz``, as an aware datetime in UTC."""
    return datetime.combine(day, END_OF_DAY, tzinfo=zone(tz)).astimezone(UTC)


def due_after(received_at: datetime, *, days: int, tz: str) -> datetime:
    """The end of the ``days``-th local day after the day of receipt."""
    return end_of_local_day(local_date(received_at, tz) + timedelta(days=days), tz)


def days_left(due_at: datetime, *, now: datetime, tz: str) -> int:
    """Whole local days until the due day (0 on the day itself, negative once overdue)."""
    return (local_date(due_at, tz) - local_date(now, tz)).days


def in_zone(at: datetime | None, tz: str) -> datetime | None:
    return at.astimezone(zone(tz)) if at is not None else None


def local_day_text(at: datetime, tz: str) -> str:
    """'2026-12-06' in the display zone (for notices)."""
    return local_date(at, tz).isoformat()


def assume_zone(at: datetime | None, tz: str) -> datetime | None:
    """A time as given, or read in the display zone when it carries no offset."""
    if at is None or at.tzinfo is not None:
        return at
    return at.replace(tzinfo=zone(tz))
