"""Access reports at rest: sealed, stored for a while, loaded, purged."""

from __future__ import annotations

import uuid
import zlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.crypto import Crypto
from app.errors import Gone, NotFound
from app.models import AccessReportRecord
from app.schemas.reports import (
    AccessReport,
)

# --- Storage ---------------------------------------------------------------------------------


def _context(request_id: uuid.UUID) -> str:
    return f"access_report:{request_id}"


def seal_report(crypto: Crypto, report: AccessReport) -> bytes:
    return crypto.encrypt(
        zlib.compress(report.model_dump_json().encode(), 6), context=_context(report.request_id)
    )


def open_report(crypto: Crypto, request_id: uuid.UUID, sealed: bytes) -> AccessReport:
    raw = zlib.decompress(crypto.decrypt(sealed, context=_context(request_id)))
    return AccessReport.model_validate_json(raw)


async def store_access_report(
    session: AsyncSession,
    *,
    crypto: Crypto,
    report: AccessReport,
    subject_blind_index: str,
    now: datetime,
    ttl: timedelta,
) -> AccessReport:
    """Seal and keep the report until now + ttl (a re-run for the same request replaces it)."""
    stored = report.model_copy(update={"expires_at": now + ttl})
    values = {
        "id": uuid.uuid4(),
        "request_id": report.request_id,
        "subject_blind_index": subject_blind_index,
        "created_at": now,
        "expires_at": now + ttl,
        "purged_at": None,
        "content": seal_report(crypto, stored),
    }
    statement = insert(AccessReportRecord).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["request_id"],
        set_={k: statement.excluded[k] for k in values if k not in ("id", "request_id")},
    )
    await session.execute(statement)
    await session.flush()
    return stored


async def load_access_report(
    session: AsyncSession,
    *,
    crypto: Crypto,
    request_id: uuid.UUID,
    subject: str | None,
    now: datetime,
) -> AccessReport:
    """The stored report; ``subject`` (a blind index) must own it unless None (staff).

    NotFound when there is none (or it is someone else's), Gone once it has expired.
    """
    row = (
        await session.exec(
            select(AccessReportRecord).where(col(AccessReportRecord.request_id) == request_id)
        )
    ).one_or_none()
    if row is None or (subject is not None and not Crypto.equal(row.subject_blind_index, subject)):
        raise NotFound("There is no access report for this request.")
    if row.content is None or row.expires_at <= now:
        raise Gone("The access report has expired; submit a new access request.")
    return open_report(crypto, request_id, row.content)


async def purge_expired_access_reports(session: AsyncSession, *, now: datetime) -> int:
    """Destroy the content of expired reports (the row stays as a tombstone); returns how many."""
    result = await session.execute(
        sa.update(AccessReportRecord)
        .where(
            col(AccessReportRecord.expires_at) <= now,
            col(AccessReportRecord.content).is_not(None),
        )
        .values(content=None, purged_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
