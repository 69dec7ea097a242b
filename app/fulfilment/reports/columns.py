"""Counting over batches of rows, column by column, at C speed (the access report's fold), and
the tallies the fold keeps.

``Counter(map(itemgetter(i), rows))`` counts a column of 2,000 rows without a Python-level step
per row; what must look at each row (the earliest and latest time per processor) is one tight
loop. A value is text as the report shows it (``as_text``): times in KST, the rest ``str``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Any

from app.datamap.schema import CollectionSpec, FieldSpec, Withhold
from app.fulfilment.reports.withholding import Withholding

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


# --- What the fold keeps per item, retention period, recipient and consent -------------------


@dataclass
class ItemTally:
    spec: CollectionSpec
    role: str
    fspec: FieldSpec
    withhold: Withhold | Withholding | None
    max_values: int
    records: int = 0
    values: dict[str, int] = field(default_factory=dict)
    omitted: int = 0

    def add_counts(self, counts: dict[Any, int]) -> None:
        """Values (none empty) with how many records hold each, in the order first seen."""
        self.records += sum(counts.values())
        if self.withhold is not None:
            return
        values = self.values
        for value, records in counts.items():
            text = value if isinstance(value, str) else as_text(value)
            if text in values:
                values[text] += records
            elif len(values) < self.max_values:
                values[text] = records
            else:
                self.omitted += records


@dataclass
class RetentionTally:
    records: int = 0
    latest_start: datetime | None = None


@dataclass
class ProvisionTally:
    items: set[str] = field(default_factory=set)
    collections: set[str] = field(default_factory=set)
    records: int = 0
    first: datetime | None = None
    last: datetime | None = None


@dataclass
class ConsentTally:
    records: int = 0
    last_changed: datetime | None = None
