"""Processors confirm the notices they applied; staff see who confirmed what and when."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pydantic
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.crypto import Crypto
from app.errors import InvalidInput, NotFound, SignatureInvalid
from app.models import OutboxMessage, PartnerFollowUp, Processor, WebhookAcknowledgement
from app.schemas.processors import AcknowledgementCreate
from app.webhooks import deliveries, notices, processors
from app.webhooks.signing import parse_webhook_id, verify, webhook_id

PROCESSOR_HEADER = "webhook-processor"


@dataclass(frozen=True)
class AckReceipt:
    webhook_id: str
    processor: str
    status: str
    received_at: datetime
    duplicate: bool


async def _sender(
    session: AsyncSession, *, body: bytes, headers: Mapping[str, str]
) -> tuple[Processor, OutboxMessage | None]:
    """Who claims to send this: the ``webhook-processor`` header, else the notice's processor."""
    lowered = {key.lower(): value for key, value in headers.items()}
    message: OutboxMessage | None = None
    code = lowered.get(PROCESSOR_HEADER)
    if not code:
        try:
            claimed = json.loads(body).get("webhook_id")
        except (ValueError, AttributeError):
            claimed = None
        message_id = parse_webhook_id(claimed) if isinstance(claimed, str) else None
        if message_id is not None:
            message = await session.get(OutboxMessage, message_id)
        code = message.target if message is not None and message.kind == "webhook" else None
    processor = (
        (await session.exec(select(Processor).where(Processor.code == code))).first()
        if code
        else None
    )
    if processor is None:
        # Same answer for an unknown processor and an unknown notice: nothing to probe.
        raise SignatureInvalid("The sender could not be identified.")
    return processor, message


async def acknowledge_notice(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    body: bytes,
    headers: Mapping[str, str],
    client_ip: str | None = None,
) -> AckReceipt:
    """Record a processor's signed ``applied``/``rejected`` for one notice it received."""
    processor, message = await _sender(session, body=body, headers=headers)
    keys = processors.signing_keys(processor, crypto=crypto, now=now)
    ack_id = verify(keys, headers=headers, body=body, now=now)
    try:
        ack = AcknowledgementCreate.model_validate_json(body)
    except pydantic.ValidationError as exc:
        errors = [
            {"pointer": "/" + "/".join(str(part) for part in error["loc"]), "message": error["msg"]}
            for error in exc.errors()
        ]
        raise InvalidInput("The acknowledgement is not valid.", errors=errors) from None
    message_id = parse_webhook_id(ack.webhook_id)
    if message is None and message_id is not None:
        message = await session.get(OutboxMessage, message_id)
    if message is None or message.kind != "webhook" or message.target != processor.code:
        raise NotFound("No notice with this webhook_id was sent to this processor.")
    recorded = await record_acknowledgement(
        session,
        crypto=crypto,
        now=now,
        message=message,
        processor_code=processor.code,
        ack_id=ack_id,
        status=ack.status,
        note=ack.note,
        client_ip=client_ip,
        via="api",
    )
    if not recorded:
        earlier = (
            await session.exec(
                select(WebhookAcknowledgement).where(
                    WebhookAcknowledgement.processor_code == processor.code,
                    WebhookAcknowledgement.ack_message_id == ack_id,
                )
            )
        ).one()
        return AckReceipt(
            webhook_id(earlier.message_id),
            processor.code,
            earlier.status,
            earlier.received_at,
            True,
        )
    return AckReceipt(webhook_id(message.id), processor.code, ack.status, now, False)


async def record_acknowledgement(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    message: OutboxMessage,
    processor_code: str,
    ack_id: str,
    status: str,
    note: str | None,
    client_ip: str | None,
    via: str,
) -> bool:
    """Record one confirmation of a notice (signed API or e-mailed link); False if ``ack_id``
    was recorded before (a resent acknowledgement, or a link used twice)."""
    sealed = crypto.encrypt(note, context=deliveries.ack_note_context(message.id)) if note else None
    inserted = (
        await session.execute(
            insert(WebhookAcknowledgement)
            .values(
                message_id=message.id,
                processor_code=processor_code,
                ack_message_id=ack_id,
                status=status,
                note_encrypted=sealed,
                received_at=now,
            )
            .on_conflict_do_nothing(constraint="uq_webhook_ack_message")
            .returning(col(WebhookAcknowledgement.id))
        )
    ).scalar_one_or_none()
    if inserted is None:
        return False
    # Confirmed: the copy kept for reminders is no longer needed.
    await session.execute(
        sa.update(PartnerFollowUp)
        .where(col(PartnerFollowUp.message_id) == message.id)
        .values(body_encrypted=None)
    )
    await trail.record(
        session,
        now=now,
        actor=f"processor:{processor_code}",
        role="processor",
        action="webhook.acknowledged",
        target_type="webhook",
        target_id=str(message.id),
        client_ip=client_ip,
        details={
            "status": status,
            "event_type": message.topic,
            "request_ref": str(message.request_ref) if message.request_ref else None,
            "via": via,
        },
    )
    return True


@dataclass(frozen=True)
class ProcessorConfirmation:
    processor: str
    processor_name: str | None
    party: str | None
    channel: str | None
    event_type: str
    webhook_id: str
    delivery_status: str
    delivered_at: datetime | None
    acknowledgement: str | None
    acknowledged_at: datetime | None
    follow_up: PartnerFollowUp | None = None
    note: str | None = None  # the partner's reason ("cannot apply"), decrypted for staff


async def processor_confirmations(
    session: AsyncSession, *, crypto: Crypto, request_ref: uuid.UUID
) -> list[ProcessorConfirmation]:
    """For a request's staff view: each notice sent to a processor and its latest confirmation."""
    latest = (
        sa.select(
            col(WebhookAcknowledgement.status).label("status"),
            col(WebhookAcknowledgement.received_at).label("at"),
            col(WebhookAcknowledgement.note_encrypted).label("note"),
        )
        .where(col(WebhookAcknowledgement.message_id) == col(OutboxMessage.id))
        .order_by(
            col(WebhookAcknowledgement.received_at).desc(), col(WebhookAcknowledgement.id).desc()
        )
        .limit(1)
        .lateral("ack")
    )
    rows = (
        await session.execute(
            sa.select(
                OutboxMessage,
                col(Processor.name),
                col(Processor.party),
                col(Processor.channel),
                latest.c.status,
                latest.c.at,
                latest.c.note,
                PartnerFollowUp,
            )
            .outerjoin(Processor, col(Processor.code) == col(OutboxMessage.target))
            .outerjoin(latest, sa.true())
            .outerjoin(PartnerFollowUp, col(PartnerFollowUp.message_id) == col(OutboxMessage.id))
            .where(
                col(OutboxMessage.kind) == notices.WEBHOOK_KIND,
                col(OutboxMessage.request_ref) == request_ref,
            )
            .order_by(col(OutboxMessage.target), col(OutboxMessage.created_at))
        )
    ).all()
    return [
        ProcessorConfirmation(
            processor=message.target or "",
            processor_name=name,
            party=party,
            channel=channel,
            event_type=message.topic,
            webhook_id=webhook_id(message.id),
            delivery_status=message.status,
            delivered_at=message.delivered_at,
            acknowledgement=status,
            acknowledged_at=at,
            follow_up=follow_up,
            note=crypto.decrypt_str(note, context=deliveries.ack_note_context(message.id))
            if note
            else None,
        )
        for message, name, party, channel, status, at, note, follow_up in rows
    ]
