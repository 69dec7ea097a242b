"""Idempotency-Key handling: the same key and body get the first answer again."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.crypto import Crypto
from app.errors import Conflict, IdempotencyKeyReused
from app.models import IdempotencyRecord


@dataclass(frozen=True)
class Claim:
    """A key claimed for a new call (``replay`` is None) or the answer to give again."""

    record_id: uuid.UUID
    replay: dict[str, Any] | None
    status_code: int | None


def fingerprint(crypto: Crypto, body: Any) -> str:
    """A keyed hash of the canonical body: compared, never reversible."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return crypto.mac("idempotency", canonical)


async def claim_key(
    session: AsyncSession,
    *,
    principal: str,
    key: str,
    fingerprint: str,
    now: datetime,
    ttl: timedelta,
) -> Claim:
    """Claim ``key`` for ``principal``; a concurrent call with the same key waits for the first."""
    await session.execute(
        sa.delete(IdempotencyRecord).where(
            col(IdempotencyRecord.principal) == principal,
            col(IdempotencyRecord.key) == key,
            col(IdempotencyRecord.expires_at) <= now,
        )
    )
    inserted = await session.execute(
        insert(IdempotencyRecord)
        .values(
            id=uuid.uuid4(),
            principal=principal,
            key=key,
            fingerprint=fingerprint,
            created_at=now,
            expires_at=now + ttl,
        )
        .on_conflict_do_nothing(constraint="uq_idempotency_record_key")
        .returning(col(IdempotencyRecord.id))
    )
    record_id = inserted.scalar_one_or_none()
    if record_id is not None:
        return Claim(record_id=record_id, replay=None, status_code=None)
    existing = (
        await session.exec(
            select(IdempotencyRecord).where(
                col(IdempotencyRecord.principal) == principal, col(IdempotencyRecord.key) == key
            )
        )
    ).one()
    if not Crypto.equal(existing.fingerprint, fingerprint):
        raise IdempotencyKeyReused("This Idempotency-Key was first used with a different body.")
    if existing.response is None:
        raise Conflict("A call with this Idempotency-Key is still in progress.")
    return Claim(record_id=existing.id, replay=existing.response, status_code=existing.status_code)


async def earlier_answer(
    connection: asyncpg.Connection, *, principal: str, key: str, fingerprint: str
) -> dict[str, Any]:
    """The answer to replay for a key an earlier call claimed (a statement that claims the key
    on its way, as intake's does, found it taken); the same checks as ``claim_key``."""
    existing = await connection.fetchrow(
        "SELECT fingerprint, response::text AS response FROM idempotency_record"
        " WHERE principal = $1 AND key = $2",
        principal,
        key,
    )
    if existing is None:  # expired and purged in between: the caller may simply retry
        raise Conflict("A call with this Idempotency-Key is still in progress.")
    if not Crypto.equal(existing["fingerprint"], fingerprint):
        raise IdempotencyKeyReused("This Idempotency-Key was first used with a different body.")
    if existing["response"] is None:
        raise Conflict("A call with this Idempotency-Key is still in progress.")
    answer: dict[str, Any] = json.loads(existing["response"])
    return answer


async def remember_answer(
    session: AsyncSession, *, record_id: uuid.UUID, status_code: int, response: dict[str, Any]
) -> None:
    """Store the answer to replay for later calls with the same key."""
    await session.execute(
        sa.update(IdempotencyRecord)
        .where(col(IdempotencyRecord.id) == record_id)
        .values(status_code=status_code, response=response)
    )


async def purge_expired(session: AsyncSession, *, now: datetime) -> int:
    """Forget answers whose keys have expired."""
    result = await session.execute(
        sa.delete(IdempotencyRecord).where(col(IdempotencyRecord.expires_at) <= now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
