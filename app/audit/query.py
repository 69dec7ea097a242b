"""Reading the audit trail: filters and keyset pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import (
    CLIENT_IP_CONTEXT,
    LEGACY_BARE_ACTIONS,
    LEGACY_BARE_SUBJECT_ACTIONS,
    STAFF_PREFIX,
    SUBJECT_PREFIX,
    Actor,
)
from app.crypto import Crypto
from app.cursors import cursor_id, decode_cursor, encode_cursor
from app.models import AuditEntry


@dataclass(frozen=True)
class AuditFilters:
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    at_from: datetime | None = None
    at_to: datetime | None = None


@dataclass(frozen=True)
class AuditRow:
    """One entry as the API shows it: the address as a hash, in clear to the officer alone."""

    id: int | None
    at: datetime
    actor: str
    role: str
    action: str
    target_type: str | None
    target_id: str | None
    client_ip: str | None
    client_address: str | None
    details: dict[str, Any]
    seq: int | None
    prev_hash: str | None
    hash: str | None


@dataclass(frozen=True)
class AuditPageView:
    entries: list[AuditRow]
    next_cursor: str | None


_HMAC = re.compile(r"^[0-9a-f]{64}$")


def _row(entry: AuditEntry, *, crypto: Crypto | None, reveal: bool) -> AuditRow:
    hashed = entry.client_ip if entry.client_ip and _HMAC.match(entry.client_ip) else None
    address: str | None = None
    if reveal and crypto is not None and entry.client_ip_encrypted is not None:
        address = crypto.decrypt_str(entry.client_ip_encrypted, context=CLIENT_IP_CONTEXT)
    elif reveal and entry.client_ip and hashed is None:
        address = entry.client_ip  # written before revision 0014, sealed as it was
    return AuditRow(
        id=entry.id,
        at=entry.at,
        actor=entry.actor,
        role=entry.role,
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        client_ip=hashed,
        client_address=address,
        details=entry.details,
        seq=entry.seq,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


# The rows written before one convention named the actor without its prefix (see actors.py).
_LEGACY_BARE = {STAFF_PREFIX: LEGACY_BARE_ACTIONS, SUBJECT_PREFIX: LEGACY_BARE_SUBJECT_ACTIONS}


def _actor_clause(actor: str) -> Any:
    """``staff:<sub>`` / ``subject:<index>`` also match the older rows naming them bare."""
    prefix = next((p for p in _LEGACY_BARE if actor.startswith(p) and len(actor) > len(p)), None)
    if prefix is None:
        return col(AuditEntry.actor) == actor
    bare = actor.removeprefix(prefix)
    return sa.or_(
        col(AuditEntry.actor) == actor,
        sa.and_(col(AuditEntry.actor) == bare, col(AuditEntry.action).in_(_LEGACY_BARE[prefix])),
    )


async def list_audit(
    session: AsyncSession,
    *,
    now: datetime,
    filters: AuditFilters,
    cursor: str | None,
    limit: int,
    actor: Actor,
    crypto: Crypto | None = None,
) -> AuditPageView:
    """Audit entries, newest first (the read is itself recorded, with how many addresses the
    privacy officer was shown)."""
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
        query = query.where(col(AuditEntry.id) < cursor_id(before))
    rows = list((await session.exec(query.limit(limit + 1))).all())
    page, more = rows[:limit], len(rows) > limit
    # Without the keys (a caller that only lists entries) no address is shown.
    reveal = crypto is not None and actor.is_officer
    shown = [_row(entry, crypto=crypto, reveal=reveal) for entry in page]
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
            "addresses_shown": sum(1 for row in shown if row.client_address is not None),
        },
    )
    return AuditPageView(shown, encode_cursor(page[-1].id) if more else None)
