"""Deliveries: the attempt log, replays and the follow-up of held notices."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.crypto import Crypto
from app.errors import Conflict, InvalidInput, NotFound, PayloadDestroyed
from app.models import OutboxMessage, Processor, WebhookAcknowledgement, WebhookAttempt
from app.schemas.processors import BulkReplay
from app.webhooks.notices import WEBHOOK_KIND
from app.webhooks.processors import awaiting_clauses, load_processor

# --- deliveries -----------------------------------------------------------------------------


@dataclass
class DeliveryView:
    message: OutboxMessage
    ack_status: str | None = None
    ack_at: datetime | None = None
    ack_note: str | None = None
    attempts: list[WebhookAttempt] = field(default_factory=list)


def _encode_cursor(message: OutboxMessage) -> str:
    raw = f"{message.created_at.isoformat()}|{message.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, ident = raw.partition("|")
        return datetime.fromisoformat(stamp), uuid.UUID(ident)
    except ValueError:
        raise InvalidInput("The cursor is not valid.") from None


def _latest_ack() -> Any:
    return (
        sa.select(
            col(WebhookAcknowledgement.status).label("ack_status"),
            col(WebhookAcknowledgement.received_at).label("ack_at"),
            col(WebhookAcknowledgement.note_encrypted).label("ack_note"),
        )
        .where(col(WebhookAcknowledgement.message_id) == col(OutboxMessage.id))
        .order_by(
            col(WebhookAcknowledgement.received_at).desc(), col(WebhookAcknowledgement.id).desc()
        )
        .limit(1)
        .lateral("ack")
    )


def ack_note_context(message_id: uuid.UUID) -> str:
    return f"webhook-ack:{message_id}"


def _view(
    crypto: Crypto,
    message: OutboxMessage,
    status: str | None,
    at: datetime | None,
    note: bytes | None,
) -> DeliveryView:
    text = crypto.decrypt_str(note, context=ack_note_context(message.id)) if note else None
    return DeliveryView(message, status, at, text)


async def list_deliveries(
    session: AsyncSession,
    *,
    crypto: Crypto,
    code: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
    request_ref: uuid.UUID | None = None,
    acknowledged: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
    processor_must_exist: bool = False,
) -> tuple[list[DeliveryView], str | None]:
    """Deliveries (newest first) with their latest acknowledgement; (page, next cursor).

    Held notices may name a processor not registered yet: only the per-processor listing
    (``processor_must_exist``) answers 404 for an unknown code.
    """
    if code is not None and processor_must_exist:
        await load_processor(session, code)
    ack = _latest_ack()
    query = (
        sa.select(OutboxMessage, ack.c.ack_status, ack.c.ack_at, ack.c.ack_note)
        .outerjoin(ack, sa.true())
        .where(col(OutboxMessage.kind) == WEBHOOK_KIND)
        .order_by(col(OutboxMessage.created_at).desc(), col(OutboxMessage.id).desc())
        .limit(limit + 1)
    )
    if code is not None:
        query = query.where(col(OutboxMessage.target) == code)
    if status is not None:
        query = query.where(col(OutboxMessage.status) == status)
    if event_type is not None:
        query = query.where(col(OutboxMessage.topic) == event_type)
    if request_ref is not None:
        query = query.where(col(OutboxMessage.request_ref) == request_ref)
    if acknowledged is not None:
        query = query.where(
            ack.c.ack_status.is_not(None) if acknowledged else ack.c.ack_status.is_(None)
        )
    if since is not None:
        query = query.where(col(OutboxMessage.created_at) >= since)
    if until is not None:
        query = query.where(col(OutboxMessage.created_at) < until)
    if cursor is not None:
        at, ident = _decode_cursor(cursor)
        query = query.where(
            sa.tuple_(col(OutboxMessage.created_at), col(OutboxMessage.id)) < sa.tuple_(at, ident)
        )
    rows = (await session.execute(query)).all()
    views = [_view(crypto, row[0], row[1], row[2], row[3]) for row in rows[:limit]]
    next_cursor = _encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
    return views, next_cursor


async def get_delivery(
    session: AsyncSession, *, crypto: Crypto, delivery_id: uuid.UUID
) -> DeliveryView:
    """One delivery with every attempt made and its latest acknowledgement."""
    ack = _latest_ack()
    row = (
        await session.execute(
            sa.select(OutboxMessage, ack.c.ack_status, ack.c.ack_at, ack.c.ack_note)
            .outerjoin(ack, sa.true())
            .where(col(OutboxMessage.id) == delivery_id, col(OutboxMessage.kind) == WEBHOOK_KIND)
        )
    ).first()
    if row is None:
        raise NotFound("No delivery with this id.")
    view = _view(crypto, row[0], row[1], row[2], row[3])
    view.attempts = list(
        (
            await session.exec(
                select(WebhookAttempt)
                .where(WebhookAttempt.message_id == delivery_id)
                .order_by(col(WebhookAttempt.id))
            )
        ).all()
    )
    return view


async def replay_delivery(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    actor: Actor,
    delivery_id: uuid.UUID,
) -> DeliveryView:
    """Send a dead (or already delivered) notice again, same webhook-id, fresh schedule."""
    message = (
        await session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.id == delivery_id, OutboxMessage.kind == WEBHOOK_KIND)
            .with_for_update()
        )
    ).first()
    if message is None:
        raise NotFound("No delivery with this id.")
    if message.status not in ("dead", "delivered"):
        raise Conflict(
            "Only dead or delivered notices can be replayed; held ones are sent when the "
            "processor is enabled."
        )
    if message.payload is None:
        raise PayloadDestroyed(
            "This notice's content was destroyed after its retention period; only its delivery "
            "record is kept, so it cannot be sent again."
        )
    processor = (
        await session.exec(select(Processor).where(Processor.code == message.target))
    ).first()
    if processor is None or processor.state != "active":
        raise Conflict("The processor is disabled or not registered: enable it first.")
    previous = message.status
    message.status = "pending"
    message.attempts = 0
    message.next_attempt_at = now
    message.updated_at = now
    session.add(message)
    await session.flush()
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="webhook.replayed",
        target_type="webhook",
        target_id=str(message.id),
        client_ip=actor.client_ip,
        details={"processor": message.target, "previous_status": previous},
    )
    return await get_delivery(session, crypto=crypto, delivery_id=delivery_id)


async def replay_dead_deliveries(
    session: AsyncSession,
    *,
    now: datetime,
    actor: Actor,
    code: str,
    options: BulkReplay,
) -> int:
    """Requeue every dead notice to one processor (optionally only recent ones); the count."""
    processor = await load_processor(session, code)
    if processor.state != "active":
        raise Conflict("The processor is disabled: enable it first.")
    conditions = [
        col(OutboxMessage.kind) == WEBHOOK_KIND,
        col(OutboxMessage.target) == code,
        col(OutboxMessage.status) == "dead",
        col(OutboxMessage.payload).is_not(None),  # destroyed ones cannot be sent again
    ]
    if options.since is not None:
        conditions.append(col(OutboxMessage.created_at) >= options.since)
    result = await session.execute(
        sa.update(OutboxMessage)
        .where(*conditions)
        .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="webhook.bulk_replayed",
        target_type="processor",
        target_id=code,
        client_ip=actor.client_ip,
        details={"count": count, "since": options.since.isoformat() if options.since else None},
    )
    return count


async def awaiting_acknowledgement(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    older_than: timedelta,
    code: str | None = None,
    limit: int = 100,
) -> list[DeliveryView]:
    """Delivered notices no processor has acknowledged after ``older_than``: for follow-up."""
    query = (
        select(OutboxMessage)
        .where(*awaiting_clauses(now - older_than))
        .order_by(col(OutboxMessage.delivered_at))
        .limit(limit)
    )
    if code is not None:
        query = query.where(OutboxMessage.target == code)
    return [DeliveryView(message) for message in (await session.exec(query)).all()]
