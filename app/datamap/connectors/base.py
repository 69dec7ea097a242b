"""The connector interface: how the service reads and changes a subject's data in a source.

One connector per data-map source, opened for one unit of work (a job) and closed after it.
Every operation takes the subject's verified identifiers, and every change re-checks in the
same statement that the record still belongs to the subject in the given role, so a record key
alone can never reach another person's data.

Atomicity: ``correct``, ``erase`` and ``restrict`` are each all-or-nothing **per source**:
postgres runs all the statements of one call in one transaction; an http source must apply a
call's whole batch or none of it (the contract in docs/datamap.md). Across sources there is no
two-phase commit: callers apply per source and record per source what was applied. Every change
is idempotent (setting values, nulling, redacting, deleting; hashing skips values that are
already hashes), so a retried call after a crash converges.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.schema import CollectionSpec

RecordKey = str | int


class SourceError(Exception):
    """A source could not answer. Never carries personal data; names the source only."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"source {source}: {reason}")
        self.source = source
        self.reason = reason


class SourceUnavailable(SourceError):
    """The source is down or timed out: try again later."""


class SourceRejected(SourceError):
    """The source refused the call (configuration or contract problem)."""


@dataclass(frozen=True, slots=True)
class RecordRef:
    """One record of a collection in which the subject appears in ``role``."""

    collection: str
    role: str
    key: RecordKey


@dataclass(frozen=True, slots=True)
class Handover:
    """The record was handed to a processor (carrier, customs broker...)."""

    processor: str
    at: datetime | None = None
    reference: str | None = None
    items: tuple[str, ...] | None = None  # None: every item of the record


@dataclass(slots=True)
class SubjectRecord:
    """A record seen from the subject's role: only that role's fields (column → value)."""

    collection: str
    role: str
    key: RecordKey
    fields: dict[str, Any]
    handovers: list[Handover] = field(default_factory=list)
    retention_start: datetime | None = None
    consent: bool | None = None
    consent_at: datetime | None = None
    restricted: bool | None = None
    in_flight: bool | None = None  # the map's in_flight condition holds (None: not declared)
    # The controller that supplied this record, where the map's origin names one per record,
    # and its own reference for it (Decree Art. 43(2): it is asked to correct or delete too).
    supplier: str | None = None
    supplier_reference: str | None = None

    @property
    def ref(self) -> RecordRef:
        return RecordRef(self.collection, self.role, self.key)


@dataclass(frozen=True, slots=True)
class RowLayout:
    """Where each part of a subject's record sits in a row of a ``RecordBatch``."""

    fields: tuple[int, ...]  # the role's fields, in the data map's order
    # One slot per handover a row can carry: (processor code, at, the items it received or None).
    handovers: tuple[tuple[int, int, tuple[str, ...] | None], ...]
    retention_start: int
    consent: int
    consent_at: int
    supplier: int


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Records of one collection role as rows: what an access report reads, in bulk.

    A row is any sequence (a tuple, an asyncpg record) laid out as ``layout`` says; an empty
    field is None or "". Values are as the source gave them (``SubjectRecord`` semantics: a
    processor code or supplier becomes text, a consent a bool).
    """

    collection: str
    role: str
    layout: RowLayout
    rows: Sequence[Sequence[Any]]


BATCH_ROWS = 2000


async def records_in_batches(
    spec: CollectionSpec, records: AsyncIterator[SubjectRecord], *, size: int = BATCH_ROWS
) -> AsyncIterator[RecordBatch]:
    """``SubjectRecord``s as batches of rows: consecutive records of one role whose handovers
    have the same shape share a batch."""
    shape: tuple[str, tuple[tuple[str, ...] | None, ...]] | None = None
    rows: list[tuple[Any, ...]] = []
    layout: RowLayout | None = None
    columns: list[str] = []  # the role's field columns, in the data map's order
    async for record in records:
        record_shape = (record.role, tuple(h.items for h in record.handovers))
        if record_shape != shape or len(rows) >= size:
            if rows and layout is not None and shape is not None:
                yield RecordBatch(spec.name, shape[0], layout, rows)
            shape, rows = record_shape, []
            columns = [field.column for field in spec.roles[record.role].fields]
            count = len(columns)
            layout = RowLayout(
                fields=tuple(range(count)),
                handovers=tuple(
                    (count + 4 + 2 * n, count + 5 + 2 * n, items)
                    for n, items in enumerate(record_shape[1])
                ),
                retention_start=count,
                consent=count + 1,
                consent_at=count + 2,
                supplier=count + 3,
            )
        fields = record.fields
        row: list[Any] = [fields.get(column) for column in columns]
        row += [record.retention_start, record.consent, record.consent_at, record.supplier]
        for handover in record.handovers:
            row += [handover.processor, handover.at]
        rows.append(tuple(row))
    if rows and layout is not None and shape is not None:
        yield RecordBatch(spec.name, shape[0], layout, rows)


@dataclass(frozen=True, slots=True)
class FieldUpdate:
    """New values for some of the role's fields of one record (column → value)."""

    collection: str
    role: str
    key: RecordKey
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Erasure:
    """Erase the role's fields of one record (or only ``columns``) by the map's strategies.

    With no ``columns`` and a collection whose erasure is ``delete_row``, the row is deleted.
    """

    collection: str
    role: str
    key: RecordKey
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """How many records changed, and which targets no longer match the subject."""

    applied: int
    missing: tuple[RecordRef, ...] = ()


class Connector(abc.ABC):
    """One source. Use as ``async with``: connections open lazily and close on exit."""

    name: str

    async def __aenter__(self) -> Connector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Raise SourceUnavailable unless the source answers."""

    @abc.abstractmethod
    def find(
        self, collection: CollectionSpec, *, subject: SubjectIdentifiers
    ) -> AsyncIterator[RecordRef]:
        """The subject's records in every role of the collection (keys only), streamed."""

    @abc.abstractmethod
    def export(
        self, collection: CollectionSpec, *, subject: SubjectIdentifiers
    ) -> AsyncIterator[SubjectRecord]:
        """The subject's records with their own fields and metadata, streamed in constant memory."""

    def export_batches(
        self, collection: CollectionSpec, *, subject: SubjectIdentifiers
    ) -> AsyncIterator[RecordBatch]:
        """``export`` in batches of rows, for reading many records at once (the access report).

        By default built from ``export``; a connector that reads rows in bulk yields its own."""
        return records_in_batches(collection, self.export(collection, subject=subject))

    @abc.abstractmethod
    async def correct(
        self, updates: Sequence[FieldUpdate], *, subject: SubjectIdentifiers
    ) -> ApplyResult:
        """Set new values, all or nothing for this source."""

    @abc.abstractmethod
    async def erase(
        self, erasures: Sequence[Erasure], *, subject: SubjectIdentifiers
    ) -> ApplyResult:
        """Erase by the map's strategies, all or nothing for this source."""

    @abc.abstractmethod
    async def restrict(
        self, refs: Sequence[RecordRef], *, subject: SubjectIdentifiers, restricted: bool
    ) -> ApplyResult:
        """Set or clear the collection's restriction flag, all or nothing for this source."""


def check_update_columns(spec: CollectionSpec, role: str, columns: Sequence[str]) -> None:
    """Only the role's own mapped fields may be changed through a connector."""
    if role not in spec.roles:
        raise ValueError(f"{spec.name}: no role {role!r}")
    allowed = {field.column for field in spec.roles[role].fields}
    unknown = [column for column in columns if column not in allowed]
    if unknown:
        raise ValueError(f"{spec.name}.{role}: not fields of this role: {sorted(unknown)}")


def json_value(value: Any) -> Any:
    """A value as JSON can carry it (datetimes ISO 8601, addresses and decimals as text)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
