"""Write to and claim from the transactional outbox."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.crypto import Crypto
from app.models import OutboxMessage

_PENDING = sa.text("outbox_message.status = 'pending'")


def payload_context(message_id: uuid.UUID) -> str:
    """AAD binding an encrypted payload to its row, so payloads cannot be swapped."""
    return f"outbox:{message_id}"


def message_values(
    *,
    crypto: Crypto,
    now: datetime,
    kind: str,
    topic: str,
    payload: dict[str, Any],
    target: str | None = None,
    request_ref: uuid.UUID | None = None,
    dedupe_key: str | None = None,
    not_before: datetime | None = None,
    max_attempts: int | None = None,
) -> dict[str, Any]:
    """The columns of one pending message, its payload encrypted and bound to its id."""
    message_id = uuid.uuid4()
    return {
        "id": message_id,
        "kind": kind,
        "topic": topic,
        "target": target,
        "payload": crypto.encrypt_json(payload, context=payload_context(message_id)),
        "status": "pending",
        "attempts": 0,
        "max_attempts": max_attempts,
        "next_attempt_at": not_before or now,
        "created_at": now,
        "updated_at": now,
        "request_ref": request_ref,
        "dedupe_key": dedupe_key,
    }


async def enqueue(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    kind: str,
    topic: str,
    payload: dict[str, Any],
    target: str | None = None,
    request_ref: uuid.UUID | None = None,
    dedupe_key: str | None = None,
    not_before: datetime | None = None,
    max_attempts: int | None = None,
) -> uuid.UUID | None:
    """Queue a message in the caller's transaction; None when dedupe_key was already queued."""
    values = message_values(
        crypto=crypto,
        now=now,
        kind=kind,
        topic=topic,
        payload=payload,
        target=target,
        request_ref=request_ref,
        dedupe_key=dedupe_key,
        not_before=not_before,
        max_attempts=max_attempts,
    )
    statement = insert(OutboxMessage).values(**values)
    if dedupe_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["dedupe_key"])
    result = await session.execute(statement.returning(col(OutboxMessage.id)))
    return result.scalar_one_or_none()


class PayloadGone(Exception):
    """The message's payload was destroyed (app/outbox/retention.py): nothing to send."""


def read_payload(crypto: Crypto, message: OutboxMessage) -> Any:
    """The decrypted payload; ``PayloadGone`` once retention destroyed it."""
    if message.payload is None:
        raise PayloadGone(str(message.id))
    return crypto.decrypt_json(message.payload, context=payload_context(message.id))


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    lease: timedelta,
    kinds: list[str] | None = None,
) -> list[OutboxMessage]:
    """Lock due messages (skipping rows other workers hold) and lease them to this worker.

    The lease pushes ``next_attempt_at`` forward: a worker that dies mid-send leaves the row to
    be claimed again once the lease runs out, so a crash delays a message but never loses it.
    """
    due = (
        sa.select(col(OutboxMessage.id))
        # A literal, not a bound value: every plan (generic ones too) can then use the partial
        # index of pending rows, however many delivered rows the table holds.
        .where(_PENDING, col(OutboxMessage.next_attempt_at) <= now)
        .order_by(col(OutboxMessage.next_attempt_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if kinds:
        due = due.where(col(OutboxMessage.kind).in_(kinds))
    # One statement: lock the due rows, lease them, return them.
    claim = (
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.id).in_(due.scalar_subquery()))
        .values(
            attempts=col(OutboxMessage.attempts) + 1,
            next_attempt_at=now + lease,
            updated_at=now,
        )
        .returning(OutboxMessage)
        .execution_options(synchronize_session=False)
    )
    messages = list((await session.execute(claim)).scalars().all())
    messages.sort(key=lambda message: message.created_at)
    return messages


async def mark_delivered(session: AsyncSession, *, message_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.id) == message_id)
        .values(status="delivered", delivered_at=now, updated_at=now, last_error=None)
    )


_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
# A Core statement, no ORM bookkeeping, and the ids as one array: one compiled statement and one
# prepared one whatever the group's size (an expanded IN was compiled and prepared per size).
_MARK_DELIVERED = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.Uuid()))))
    .values(
        status="delivered",
        delivered_at=sa.bindparam("now"),
        updated_at=sa.bindparam("now"),
        last_error=None,
    )
)


async def mark_delivered_many(
    session: AsyncSession, *, message_ids: list[uuid.UUID], now: datetime
) -> None:
    """Mark several messages delivered in one statement (the worker's group commit)."""
    if message_ids:
        await session.execute(_MARK_DELIVERED, {"ids": message_ids, "now": now})


async def mark_held(
    session: AsyncSession,
    *,
    message_id: uuid.UUID,
    now: datetime,
    reason: str,
    attempted: bool,
) -> None:
    """Hold a message until an operator releases it; an unattempted claim is given back."""
    values: dict[str, Any] = {"status": "held", "updated_at": now, "last_error": reason[:1024]}
    if not attempted:
        values["attempts"] = col(OutboxMessage.attempts) - 1
    await session.execute(
        sa.update(OutboxMessage).where(col(OutboxMessage.id) == message_id).values(**values)
    )


async def destroy_payloads(
    session: AsyncSession, *, message_ids: list[uuid.UUID], now: datetime
) -> None:
    """Destroy these messages' payloads; the rows stay as the delivery record."""
    if message_ids:
        await session.execute(
            sa.update(OutboxMessage)
            .where(col(OutboxMessage.id).in_(message_ids), col(OutboxMessage.payload).is_not(None))
            .values(payload=None, payload_destroyed_at=now)
        )


async def mark_retry(
    session: AsyncSession, *, message_id: uuid.UUID, now: datetime, at: datetime, error: str
) -> None:
    await session.execute(
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.id) == message_id)
        .values(next_attempt_at=at, updated_at=now, last_error=error[:1024])
    )


async def mark_dead(
    session: AsyncSession, *, message_id: uuid.UUID, now: datetime, error: str
) -> None:
    await session.execute(
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.id) == message_id)
        .values(status="dead", updated_at=now, last_error=error[:1024])
    )


async def requeue(session: AsyncSession, *, message_id: uuid.UUID, now: datetime) -> bool:
    """Put a dead message back in the queue (operator replay); the id stays the same."""
    result = await session.execute(
        sa.update(OutboxMessage)
        .where(
            col(OutboxMessage.id) == message_id,
            col(OutboxMessage.status) == "dead",
            col(OutboxMessage.payload).is_not(None),  # nothing left to send once destroyed
        )
        .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def queue_stats(session: AsyncSession, *, now: datetime) -> list[tuple[str, str, int, float]]:
    """(kind, status, count, age in seconds of the oldest) for pending and dead messages."""
    rows = await session.execute(
        sa.select(
            col(OutboxMessage.kind),
            col(OutboxMessage.status),
            sa.func.count(),
            sa.func.min(col(OutboxMessage.created_at)),
        )
        .where(col(OutboxMessage.status).in_(["pending", "dead"]))
        .group_by(col(OutboxMessage.kind), col(OutboxMessage.status))
    )
    return [
        (kind, status, count, max(0.0, (now - oldest).total_seconds()))
        for kind, status, count, oldest in rows.all()
    ]
