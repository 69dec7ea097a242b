"""The retained-records store: separate, encrypted per record, crypto-shredded on time."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.crypto import Crypto, open_sealed, seal
from app.errors import InvalidInput, NotFound
from app.models import RetainedRecord, RetentionKey
from app.outbox.jobs import PeriodicJob, WorkerContext
from app.retention.rules import (
    _REASON,
    KEK_VERSION,
    PURGE_ACTION,
    PURGE_JOB_NAME,
    RetainedRecordDestroyed,
    RetentionRule,
)
from app.vocabulary import ITEMS

# --- Store -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetainInput:
    """One record (or one subject's part of it) to keep under ``term``."""

    source: str
    collection: str
    record_key: str
    subject_key: str
    items: Sequence[str]
    term: RetentionRule
    clock_start: datetime
    payload: dict[str, Any]
    role: str | None = None
    request_id: uuid.UUID | None = None
    destroy_after: datetime | None = None  # None: clock_start + the rule's period


@dataclass(frozen=True)
class RetainedSummary:
    """What is kept, under which law, until when; no personal data."""

    id: uuid.UUID
    source: str
    collection: str
    record_key: str
    role: str | None
    items: list[str]
    rule: str
    legal_basis_ko: str
    legal_basis_en: str
    clock_start: datetime
    destroy_after: datetime
    retained_at: datetime
    request_id: uuid.UUID | None


@dataclass(frozen=True)
class RetainedView:
    summary: RetainedSummary
    payload: dict[str, Any]


@dataclass
class PurgeCounts:
    destroyed: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)

    def add(self, other: PurgeCounts) -> None:
        self.destroyed += other.destroyed
        for rule, count in other.by_rule.items():
            self.by_rule[rule] = self.by_rule.get(rule, 0) + count


def _payload_aad(record_id: uuid.UUID) -> bytes:
    return f"retained:{record_id}".encode()


def _key_aad(record_id: uuid.UUID, version: int) -> bytes:
    return f"retention-key:{record_id}:v{version}".encode()


def _summary(row: RetainedRecord) -> RetainedSummary:
    return RetainedSummary(
        id=row.id,
        source=row.source,
        collection=row.collection,
        record_key=row.record_key,
        role=row.role,
        items=list(row.items),
        rule=row.rule,
        legal_basis_ko=row.legal_basis_ko,
        legal_basis_en=row.legal_basis_en,
        clock_start=row.clock_start,
        destroy_after=row.destroy_after,
        retained_at=row.retained_at,
        request_id=row.request_id,
    )


async def retain_records(
    session: AsyncSession, *, crypto: Crypto, now: datetime, records: Sequence[RetainInput]
) -> list[uuid.UUID]:
    """Seal and store records to keep, each with its own data key; ids in input order.

    Retaining the same (source, collection, record_key, subject_key, role) again returns the id
    already stored and changes nothing.
    """
    if not records:
        return []
    rows: list[dict[str, Any]] = []
    keys: dict[uuid.UUID, bytes] = {}
    for index, record in enumerate(records):
        pointer = f"/records/{index}"
        for item in record.items:
            if item not in ITEMS:
                raise InvalidInput("Unknown item.", errors=[{"pointer": f"{pointer}/items"}])
        destroy_after = record.destroy_after or record.term.destroy_after(record.clock_start)
        if destroy_after <= now:
            raise InvalidInput(
                "The retention period is already over: erase the record instead.",
                errors=[{"pointer": f"{pointer}/destroy_after"}],
            )
        record_id = uuid.uuid4()
        data_key = os.urandom(32)
        plaintext = json.dumps(record.payload, ensure_ascii=False, default=str).encode()
        keys[record_id] = seal(crypto.retention_kek, data_key, aad=_key_aad(record_id, KEK_VERSION))
        rows.append(
            {
                "id": record_id,
                "source": record.source,
                "collection": record.collection,
                "record_key": record.record_key,
                "subject_key": record.subject_key,
                "role": record.role,
                "items": list(dict.fromkeys(record.items)),
                "rule": record.term.rule,
                "legal_basis_ko": record.term.legal_basis_ko,
                "legal_basis_en": record.term.legal_basis_en,
                "clock_start": record.clock_start,
                "destroy_after": destroy_after,
                "retained_at": now,
                "request_id": record.request_id,
                "payload": seal(data_key, plaintext, aad=_payload_aad(record_id)),
            }
        )
    # Core executemany: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues")
    # with one cached statement, within the 32,767-parameter limit.
    records_table, keys_table = _tables()
    inserted = set(
        (
            await session.execute(
                insert(records_table).on_conflict_do_nothing().returning(records_table.c.id),
                rows,
            )
        ).scalars()
    )
    key_rows = [
        {"id": rid, "kek_version": KEK_VERSION, "wrapped_key": keys[rid], "created_at": now}
        for rid in keys
        if rid in inserted
    ]
    if key_rows:
        await session.execute(insert(keys_table), key_rows)
    ids: list[uuid.UUID] = []
    for row in rows:
        if row["id"] in inserted:
            ids.append(row["id"])
            continue
        existing = (
            await session.execute(
                sa.select(col(RetainedRecord.id)).where(
                    col(RetainedRecord.source) == row["source"],
                    col(RetainedRecord.collection) == row["collection"],
                    col(RetainedRecord.record_key) == row["record_key"],
                    col(RetainedRecord.subject_key) == row["subject_key"],
                    col(RetainedRecord.role).is_not_distinct_from(row["role"]),
                )
            )
        ).scalar_one()
        ids.append(existing)
    return ids


async def retain_record(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    source: str,
    collection: str,
    record_key: str,
    subject_key: str,
    items: Sequence[str],
    term: RetentionRule,
    clock_start: datetime,
    payload: dict[str, Any],
    role: str | None = None,
    request_id: uuid.UUID | None = None,
    destroy_after: datetime | None = None,
) -> uuid.UUID:
    """Keep one record under ``term`` until ``destroy_after`` (default: clock start + period)."""
    record = RetainInput(
        source=source,
        collection=collection,
        record_key=record_key,
        subject_key=subject_key,
        items=items,
        term=term,
        clock_start=clock_start,
        payload=payload,
        role=role,
        request_id=request_id,
        destroy_after=destroy_after,
    )
    (record_id,) = await retain_records(session, crypto=crypto, now=now, records=[record])
    return record_id


async def list_retained(
    session: AsyncSession,
    *,
    subject_keys: Sequence[str] | None = None,
    request_id: uuid.UUID | None = None,
) -> list[RetainedSummary]:
    """What is kept for these subject keys (or this request), soonest destruction first."""
    query = sa.select(RetainedRecord).order_by(
        col(RetainedRecord.destroy_after), col(RetainedRecord.id)
    )
    if subject_keys is not None:
        query = query.where(col(RetainedRecord.subject_key).in_(list(subject_keys)))
    if request_id is not None:
        query = query.where(col(RetainedRecord.request_id) == request_id)
    rows = (await session.execute(query)).scalars().all()
    return [_summary(row) for row in rows]


async def read_retained(
    session: AsyncSession,
    *,
    crypto: Crypto,
    record_id: uuid.UUID,
    now: datetime,
    actor: str,
    role: str,
    reason: str,
) -> RetainedView:
    """Open a retained record for lawful access (``reason``: a short code), audited."""
    if not _REASON.match(reason):
        raise InvalidInput("The reason must be a short code.", errors=[{"pointer": "/reason"}])
    row = await session.get(RetainedRecord, record_id)
    if row is None:
        raise NotFound("No such retained record.")
    key = await session.get(RetentionKey, record_id)
    if key is None:
        raise RetainedRecordDestroyed("The record's key was destroyed; it cannot be read.")
    data_key = open_sealed(
        crypto.retention_kek, key.wrapped_key, aad=_key_aad(record_id, key.kek_version)
    )
    payload = json.loads(open_sealed(data_key, row.payload, aad=_payload_aad(record_id)))
    await trail.record(
        session,
        now=now,
        actor=actor,
        role=role,
        action="retained.read",
        target_type="retained_record",
        target_id=str(record_id),
        details={"reason": reason, "rule": row.rule},
    )
    return RetainedView(summary=_summary(row), payload=payload)


async def count_due(session: AsyncSession, *, now: datetime) -> dict[str, int]:
    """How many retained records are due for destruction at ``now``, by rule."""
    rows = await session.execute(
        sa.select(col(RetainedRecord.rule), sa.func.count())
        .where(col(RetainedRecord.destroy_after) <= now)
        .group_by(col(RetainedRecord.rule))
        .order_by(col(RetainedRecord.rule))
    )
    return {rule: int(count) for rule, count in rows.all()}


def _tables() -> tuple[sa.Table, sa.Table]:
    return RetainedRecord.__table__, RetentionKey.__table__  # type: ignore[attr-defined]


async def purge_due(
    session: AsyncSession,
    *,
    now: datetime,
    batch: int,
    actor: str = "system",
    role: str = "system",
) -> PurgeCounts:
    """Destroy up to ``batch`` due records: data keys first, then rows; one audit entry."""
    # Core statements on the tables: no ORM identity-map bookkeeping for thousands of rows.
    records, keys = _tables()
    due_ids = list(
        (
            await session.execute(
                sa.select(records.c.id)
                .where(records.c.destroy_after <= now)
                .order_by(records.c.destroy_after)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    if not due_ids:
        return PurgeCounts()
    # One array parameter, however large the batch (an IN list binds one parameter per id).
    ids = sa.bindparam("ids", due_ids, type_=ARRAY(sa.Uuid))
    await session.execute(sa.delete(keys).where(keys.c.id == sa.any_(ids)))
    destroyed = (
        await session.execute(
            sa.delete(records)
            .where(records.c.id == sa.any_(ids))
            .returning(records.c.id, records.c.rule)
        )
    ).all()
    by_rule = dict(sorted(Counter(rule for _id, rule in destroyed).items()))
    await trail.record(
        session,
        now=now,
        actor=actor,
        role=role,
        action=PURGE_ACTION,
        target_type="retained_record",
        details={
            "count": len(destroyed),
            "by_rule": by_rule,
            "record_ids": sorted(str(record_id) for record_id, _rule in destroyed),
        },
    )
    return PurgeCounts(destroyed=len(destroyed), by_rule=by_rule)


async def run_retention_purge(ctx: WorkerContext) -> int:
    """The daily job: destroy everything due, one committed batch at a time."""
    now = ctx.clock.now()
    total = PurgeCounts()
    while True:
        async with ctx.db.transaction() as session:
            counts = await purge_due(
                session,
                now=now,
                batch=ctx.settings.retention_purge_batch_size,
                actor="worker:retention-purge",
            )
        if counts.destroyed == 0:
            return total.destroyed
        total.add(counts)


PURGE_JOB = PeriodicJob(name=PURGE_JOB_NAME, every=timedelta(days=1), run=run_retention_purge)
