"""Write and verify the hash-chained audit trail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import AuditEntry

GENESIS = "0" * 64
# Serialises writers so each entry's prev_hash is the hash of the entry before it.
_AUDIT_LOCK = 0x_A0D17


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def _fields(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "client_ip": entry.client_ip,
        "details": entry.details,
    }


async def record(
    session: AsyncSession,
    *,
    now: datetime,
    actor: str,
    role: str,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    client_ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the chain in the caller's transaction."""
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(_AUDIT_LOCK)))
    last = (
        await session.exec(
            select(AuditEntry.id, AuditEntry.hash).order_by(col(AuditEntry.id).desc()).limit(1)
        )
    ).first()
    next_id = (last[0] + 1) if last and last[0] is not None else 1
    prev_hash = last[1] if last else GENESIS
    entry = AuditEntry(
        id=next_id,
        at=now,
        actor=actor,
        role=role,
        action=action,
        target_type=target_type,
        target_id=target_id,
        client_ip=client_ip,
        details=details or {},
        prev_hash=prev_hash,
        hash="",
    )
    # Round-trip details through JSON so the hash covers exactly what JSONB will store.
    entry.details = json.loads(json.dumps(entry.details, default=str))
    entry.hash = entry_hash(prev_hash, _fields(entry))
    session.add(entry)
    await session.flush()
    return entry


async def _entries(session: AsyncSession, batch: int = 1000) -> AsyncIterator[AuditEntry]:
    after = 0
    while True:
        rows = (
            await session.exec(
                select(AuditEntry)
                .where(col(AuditEntry.id) > after)
                .order_by(col(AuditEntry.id))
                .limit(batch)
            )
        ).all()
        if not rows:
            return
        for row in rows:
            yield row
        after = rows[-1].id or after


async def verify_chain(session: AsyncSession) -> tuple[int, int | None]:
    """Walk the chain; returns (entries checked, id of the first entry that does not match)."""
    prev_hash = GENESIS
    checked = 0
    async for entry in _entries(session):
        checked += 1
        if entry.prev_hash != prev_hash or entry_hash(prev_hash, _fields(entry)) != entry.hash:
            return checked, entry.id
        prev_hash = entry.hash
    return checked, None
