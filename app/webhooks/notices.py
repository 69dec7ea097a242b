"""Notices to processors: one outbox row per event and processor."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.crypto import Crypto
from app.models import OutboxMessage, Processor
from app.outbox import queue
from app.outbox.retry import WEBHOOK_RETRY
from app.webhooks.signing import event_body

WEBHOOK_KIND = "webhook"


# --- notices --------------------------------------------------------------------------------


async def queue_processor_notice(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    processor_code: str,
    event_type: str,
    data: dict[str, Any],
    request_ref: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Queue one signed notice to one processor in the caller's transaction; returns its id.

    - active and subscribed: queued ``pending``, sent by the worker at once;
    - not subscribed to ``event_type``: not queued, audited (``webhook.skipped``), returns None;
    - disabled or not registered: queued ``held`` (never dropped), audited (``webhook.held``),
      reported to the privacy officer, and sent when the processor is registered or enabled.

    ``data`` must hold only what this processor received (its record references, new values).
    """
    body = event_body(event_type=event_type, occurred_at=now, data=data)
    processor = (
        await session.exec(select(Processor).where(Processor.code == processor_code))
    ).first()
    if processor is not None and event_type not in processor.events:
        await trail.record(
            session,
            now=now,
            actor="system",
            role="system",
            action="webhook.skipped",
            target_type="processor",
            target_id=processor_code,
            details={
                "event_type": event_type,
                "reason": "not subscribed",
                "request_ref": request_ref,
            },
        )
        return None
    message_id = await queue.enqueue(
        session,
        crypto=crypto,
        now=now,
        kind=WEBHOOK_KIND,
        topic=event_type,
        target=processor_code,
        payload={"body": base64.b64encode(body).decode()},
        request_ref=request_ref,
        max_attempts=WEBHOOK_RETRY.max_attempts,  # ten tries over ~3 days
    )
    assert message_id is not None  # no dedupe key: always inserted
    if processor is None or processor.state != "active":
        reason = "processor not registered" if processor is None else "processor disabled"
        await session.execute(
            sa.update(OutboxMessage)
            .where(col(OutboxMessage.id) == message_id)
            .values(status="held", last_error=f"held: {reason}")
        )
        await trail.record(
            session,
            now=now,
            actor="system",
            role="system",
            action="webhook.held",
            target_type="webhook",
            target_id=str(message_id),
            details={"processor": processor_code, "event_type": event_type, "reason": reason},
        )
    return message_id


def notice_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes queued for a notice."""
    return base64.b64decode(payload["body"])


async def hold_pending(session: AsyncSession, *, code: str, now: datetime) -> int:
    """Hold every pending notice to a processor (it was disabled); returns how many."""
    result = await session.execute(
        sa.update(OutboxMessage)
        .where(
            col(OutboxMessage.kind) == WEBHOOK_KIND,
            col(OutboxMessage.target) == code,
            col(OutboxMessage.status) == "pending",
        )
        .values(status="held", updated_at=now, last_error="held: processor disabled")
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def release_held(session: AsyncSession, *, code: str, now: datetime) -> int:
    """Send held notices to a processor again, with a fresh retry schedule; returns how many."""
    result = await session.execute(
        sa.update(OutboxMessage)
        .where(
            col(OutboxMessage.kind) == WEBHOOK_KIND,
            col(OutboxMessage.target) == code,
            col(OutboxMessage.status) == "held",
        )
        .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
