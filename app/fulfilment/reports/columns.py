"""Counting over batches of rows, column by column, at C speed (the access report's fold).

``Counter(map(itemgetter(i), rows))`` counts a column of 2,000 rows without a Python-level step
per row; what must look at each row (the earliest and latest time per processor) is one tight
loop. A value is text as the report shows it (``as_text``): times in KST, the rest ``str``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Any

KST = timezone(timedelta(hours=9), "KST")


def as_text(value: Any) -> str:
    """A value as the report shows it."""
    if isinstance(value, datetime):
        return value.astimezone(KST).isoformat(timespec="seconds")
    return str(value)


def latest(rows: Sequence[Sequence[Any]], index: int) -> Any:
    """The greatest value at ``index``, None where no row has one."""
    try:
        return max(map(itemgetter(index), rows), default=None)
    except TypeError:  # some rows have none (None does not compare)
        return max((v for v in map(itemgetter(index), rows) if v is not None), default=None)


def count_values(rows: Sequence[Sequence[Any]], index: int) -> Counter[Any]:
    """How many rows hold each value at ``index``, in the order first seen."""
    try:
        return Counter(map(itemgetter(index), rows))
    except TypeError:  # an unhashable value (a list from an http source): count it as text
        return Counter(
            value if value is None or isinstance(value, str) else as_text(value)
            for value in map(itemgetter(index), rows)
        )


def spans(
    rows: Sequence[Sequence[Any]], key_index: int, at_index: int
) -> dict[Any, tuple[int, Any, Any]]:
    """For each non-empty key: how many rows, and the earliest and latest time beside it."""
    firsts: dict[Any, Any] = {}
    lasts: dict[Any, Any] = {}
    for key, at in map(itemgetter(key_index, at_index), rows):
        if at is None:
            continue
        first = firsts.get(key)
        if first is None:
            firsts[key] = lasts[key] = at
        elif at < first:
            firsts[key] = at
        elif at > lasts[key]:
            lasts[key] = at
    counts = count_values(rows, key_index)
    counts.pop(None, None)
    return {key: (n, firsts.get(key), lasts.get(key)) for key, n in counts.items()}
