"""Field types every API body and query parameter shares.

``Instant``: an RFC 3339 date-time given as text (a number is not one, although pydantic would
read it as a Unix time), whose wall time stays inside what Python and PostgreSQL hold under any
offset up to ±14 h, so converting it to UTC (or reading a naive one in Asia/Seoul) cannot
overflow.

``Day``: a calendar date given as text (YYYY-MM-DD; pydantic would also read ``0`` or ``86400``
as Unix times), inside the same range, so its start and end in any zone convert to UTC.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

# One day inside year 1 and year 9999: any UTC offset keeps the converted value in range.
EARLIEST = datetime(1, 1, 2)
LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999)
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _text_date_time(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError("must be an RFC 3339 date-time such as 2026-11-26T10:00:00+09:00")
    return value


def _in_range(value: datetime) -> datetime:
    if not EARLIEST <= value.replace(tzinfo=None) <= LATEST:
        raise ValueError("must be between 0001-01-02 and 9999-12-30")
    return value


Instant = Annotated[datetime, BeforeValidator(_text_date_time), AfterValidator(_in_range)]


def _text_date(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError("must be a date such as 2026-11-26")
    return value


def _day_in_range(value: date) -> date:
    if not EARLIEST.date() <= value <= LATEST.date():
        raise ValueError("must be between 0001-01-02 and 9999-12-30")
    return value


Day = Annotated[date, BeforeValidator(_text_date), AfterValidator(_day_in_range)]
