"""Restrictions while a correction is pending, suspensions of processing, and the usage check.

Policy section 6: while a correction is pending the data is "not used or provided"; PIPA Art. 37:
processing for a purpose stops when the subject asks. Both are rows keyed by the subject's blind
indexes (the same keys subject tokens carry), so internal systems can ask "may I use this?" with
a phone number or an e-mail address and get an answer from index lookups only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.crypto import Crypto
from app.errors import InvalidInput
from app.models import ProcessingRestriction, ProcessingSuspension
from app.subjects.identifiers import normalise_email, normalise_phone
from app.vocabulary import ITEMS, PURPOSES

ReasonCode = Literal["correction_pending", "processing_suspended"]
IDENTIFIER_KINDS = ("phone", "email")


@dataclass(frozen=True)
class RestrictedItem:
    """One item to restrict, optionally only in one role or one record of the subject."""

    item: str
    role: str | None = None
    record_ref: str | None = None


@dataclass(frozen=True)
class UsageReason:
    code: ReasonCode
    request_id: uuid.UUID
    item: str | None = None
    purpose: str | None = None


@dataclass(frozen=True)
class UsageDecision:
    allowed: bool
    reasons: list[UsageReason] = field(default_factory=list)


def _invalid(pointer: str, message: str) -> InvalidInput:
    return InvalidInput(message, errors=[{"pointer": pointer, "message": message}])


def _check_items(items: Iterable[str], pointer: str) -> None:
    for index, item in enumerate(items):
        if item not in ITEMS:
            raise _invalid(f"{pointer}/{index}", "Unknown item.")


def _check_purposes(purposes: Iterable[str], pointer: str) -> None:
    for index, purpose in enumerate(purposes):
        if purpose not in PURPOSES:
            raise _invalid(f"{pointer}/{index}", "Unknown purpose.")


def subject_keys_for(crypto: Crypto, identifiers: Mapping[str, str | None]) -> list[str]:
    """Blind indexes of the given raw identifiers (normalised first); 422 if none or invalid."""
    keys: list[str] = []
    for kind, raw in identifiers.items():
        if kind not in IDENTIFIER_KINDS:
            raise _invalid(f"/identifiers/{kind}", "Unknown identifier kind.")
        if raw is None:
            continue
        try:
            normalised = normalise_phone(raw) if kind == "phone" else normalise_email(raw)
        except InvalidInput as exc:
            raise _invalid(f"/identifiers/{kind}", exc.detail) from None
        keys.append(crypto.blind_index(kind, normalised))
    if not keys:
        raise _invalid("/identifiers", "At least one identifier (phone or email) is required.")
    return keys


def restriction_rows(
    *,
    subject_keys: Sequence[str],
    items: Iterable[str | RestrictedItem],
    request_id: uuid.UUID,
    now: datetime,
) -> list[dict[str, Any]]:
    """The rows restricting these items of every subject key (checked: known item codes)."""
    scoped = [
        entry if isinstance(entry, RestrictedItem) else RestrictedItem(entry) for entry in items
    ]
    _check_items((entry.item for entry in scoped), "/items")
    return [
        {
            "id": uuid.uuid4(),
            "subject_key": key,
            "item": entry.item,
            "role": entry.role,
            "record_ref": entry.record_ref,
            "request_id": request_id,
            "created_at": now,
        }
        for key in dict.fromkeys(subject_keys)
        for entry in dict.fromkeys(scoped)
    ]


async def restrict_items(
    session: AsyncSession,
    *,
    subject_keys: Sequence[str],
    items: Iterable[str | RestrictedItem],
    request_id: uuid.UUID,
    now: datetime,
) -> int:
    """Restrict items of a subject until the correction ``request_id`` is done; returns new rows."""
    rows = restriction_rows(subject_keys=subject_keys, items=items, request_id=request_id, now=now)
    if not rows:
        return 0
    result = await session.execute(
        insert(ProcessingRestriction)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(col(ProcessingRestriction.id))
    )
    return len(result.all())


async def lift_restrictions(
    session: AsyncSession,
    *,
    request_id: uuid.UUID,
    now: datetime,
    items: Sequence[str] | None = None,
) -> int:
    """Lift the restrictions of ``request_id`` (only ``items`` when given); returns rows lifted."""
    statement = (
        sa.update(ProcessingRestriction)
        .where(
            col(ProcessingRestriction.request_id) == request_id,
            col(ProcessingRestriction.lifted_at).is_(None),
        )
        .values(lifted_at=now)
    )
    if items is not None:
        statement = statement.where(col(ProcessingRestriction.item).in_(list(items)))
    result = await session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]


def suspension_rows(
    *,
    subject_keys: Sequence[str],
    purposes: Iterable[str],
    request_id: uuid.UUID,
    now: datetime,
    consent_withdrawal: bool = False,
) -> list[dict[str, Any]]:
    """The rows suspending these purposes for every subject key (checked: known purposes)."""
    chosen = list(dict.fromkeys(purposes))
    _check_purposes(chosen, "/purposes")
    return [
        {
            "id": uuid.uuid4(),
            "subject_key": key,
            "purpose": purpose,
            "request_id": request_id,
            "consent_withdrawal": consent_withdrawal,
            "since": now,
        }
        for key in dict.fromkeys(subject_keys)
        for purpose in chosen
    ]


async def suspend_purposes(
    session: AsyncSession,
    *,
    subject_keys: Sequence[str],
    purposes: Iterable[str],
    request_id: uuid.UUID,
    now: datetime,
    consent_withdrawal: bool = False,
) -> int:
    """Suspend processing for these purposes (PIPA Art. 37); returns new rows."""
    rows = suspension_rows(
        subject_keys=subject_keys,
        purposes=purposes,
        request_id=request_id,
        now=now,
        consent_withdrawal=consent_withdrawal,
    )
    if not rows:
        return 0
    result = await session.execute(
        insert(ProcessingSuspension)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(col(ProcessingSuspension.id))
    )
    return len(result.all())


async def lift_suspension(
    session: AsyncSession,
    *,
    request_id: uuid.UUID,
    now: datetime,
    purposes: Sequence[str] | None = None,
) -> int:
    """End the suspensions of ``request_id`` (only ``purposes`` when given); returns rows lifted."""
    statement = (
        sa.update(ProcessingSuspension)
        .where(
            col(ProcessingSuspension.request_id) == request_id,
            col(ProcessingSuspension.lifted_at).is_(None),
        )
        .values(lifted_at=now)
    )
    if purposes is not None:
        statement = statement.where(col(ProcessingSuspension.purpose).in_(list(purposes)))
    result = await session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def active_restrictions(
    session: AsyncSession, *, subject_keys: Sequence[str]
) -> list[ProcessingRestriction]:
    """The subject's restrictions in force (for staff views and access reports)."""
    rows = await session.execute(
        sa.select(ProcessingRestriction)
        .where(
            col(ProcessingRestriction.subject_key).in_(list(subject_keys)),
            col(ProcessingRestriction.lifted_at).is_(None),
        )
        .order_by(col(ProcessingRestriction.created_at))
    )
    return list(rows.scalars().all())


async def active_suspensions(
    session: AsyncSession, *, subject_keys: Sequence[str]
) -> list[ProcessingSuspension]:
    """The subject's suspensions in force (for staff views and access reports)."""
    rows = await session.execute(
        sa.select(ProcessingSuspension)
        .where(
            col(ProcessingSuspension.subject_key).in_(list(subject_keys)),
            col(ProcessingSuspension.lifted_at).is_(None),
        )
        .order_by(col(ProcessingSuspension.since))
    )
    return list(rows.scalars().all())


# The active restrictions and suspensions of a person's keys ($1, $2: one per identifier kind,
# NULL for a kind not given) for a purpose ($3), one round trip; each half is served by its
# partial index (``lifted_at IS NULL``). Only single values as parameters, the items filtered
# here: given an array (the keys, or the items) PostgreSQL planned every execution anew (its
# generic plan looked dearer), about 0.05 ms of a 0.15 ms round trip; this way it keeps the
# prepared statement's generic plan (docs/BENCHMARKS.md, "Usage check").
_USAGE = """
    SELECT 'correction_pending' AS code, request_id, item, NULL AS purpose
      FROM processing_restriction
     WHERE subject_key IN ($1::text, $2::text) AND lifted_at IS NULL
    UNION ALL
    SELECT 'processing_suspended', request_id, NULL, purpose
      FROM processing_suspension
     WHERE subject_key IN ($1::text, $2::text) AND lifted_at IS NULL AND purpose = $3
    """


async def check_usage(
    connection: asyncpg.Connection,
    *,
    crypto: Crypto,
    identifiers: Mapping[str, str | None],
    purpose: str,
    items: Sequence[str] | None = None,
) -> UsageDecision:
    """May this person's data (``items``, or any item when None) be used for ``purpose`` now?"""
    if purpose not in PURPOSES:
        raise _invalid("/purpose", "Unknown purpose.")
    chosen = None if items is None else list(dict.fromkeys(items))
    if chosen is not None:
        _check_items(chosen, "/items")
    keys = subject_keys_for(crypto, identifiers)
    first, second = (*keys, None, None)[: len(IDENTIFIER_KINDS)]  # a key per kind at most
    # Straight to asyncpg: on this hot path SQLAlchemy's execute cost more than the query.
    rows = await connection.fetch(_USAGE, first, second, purpose)
    reasons = list(
        dict.fromkeys(
            UsageReason(code=code, request_id=request_id, item=item, purpose=row_purpose)
            for code, request_id, item, row_purpose in (tuple(row) for row in rows)
            if chosen is None or item is None or item in chosen  # a suspension: every item
        )
    )
    reasons.sort(key=lambda r: (r.code, str(r.request_id), r.item or "", r.purpose or ""))
    return UsageDecision(allowed=not reasons, reasons=reasons)
