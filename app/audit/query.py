"""Reading the audit trail: filters and keyset pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import LEGACY_BARE_ACTIONS, STAFF_PREFIX, Actor
from app.errors import InvalidInput
from app.models import AuditEntry
from app.requests.queries import decode_cursor, encode_cursor


@dataclass(frozen=True)
class AuditFilters:
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    at_from: datetime | None = None
    at_to: datetime | None = None


@dataclass(frozen=True)
class AuditPageView:
    entries: list[AuditEntry]
    next_cursor: str | None


def _actor_clause(actor: str) -> Any:
    """``staff:<sub>`` also matches the rows written before one convention (bare ``sub``)."""
    if not actor.startswith(STAFF_PREFIX) or len(actor) == len(STAFF_PREFIX):
        return col(AuditEntry.actor) == actor
    bare = actor.removeprefix(STAFF_PREFIX)
    return sa.or_(
        col(AuditEntry.actor) == actor,
        sa.and_(col(AuditEntry.actor) == bare, col(AuditEntry.action).in_(LEGACY_BARE_ACTIONS)),
    )


async def list_audit(
    session: AsyncSession,
    *,
    now: datetime,
    filters: AuditFilters,
    cursor: str | None,
    limit: int,
    actor: Actor,
) -> AuditPageView:
    """Audit entries, newest first (the read is itself recorded)."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc())
    if filters.actor is not None:
        query = query.where(_actor_clause(filters.actor))
    if filters.action is not None:
        query = query.where(col(AuditEntry.action) == filters.action)
    if filters.target_type is not None:
        query = query.where(col(AuditEntry.target_type) == filters.target_type)
    if filters.target_id is not None:
        query = query.where(col(AuditEntry.target_id) == filters.target_id)
    if filters.at_from is not None:
        query = query.where(col(AuditEntry.at) >= filters.at_from)
    if filters.at_to is not None:
        query = query.where(col(AuditEntry.at) < filters.at_to)
    if cursor is not None:
        (before,) = decode_cursor(cursor, 1)
        if not before.isdigit():
            raise InvalidInput("The cursor is not valid.")
        query = query.where(col(AuditEntry.id) < int(before))
    rows = list((await session.exec(query.limit(limit + 1))).all())
    page, more = rows[:limit], len(rows) > limit
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="audit.read",
        target_type="audit",
        client_ip=actor.client_ip,
        details={
            "filters": {k: v for k, v in filters.__dict__.items() if v is not None},
            "count": len(page),
        },
    )
    return AuditPageView(page, encode_cursor(page[-1].id) if more else None)
