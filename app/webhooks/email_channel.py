"""Partners without a webhook: the notice by e-mail, a confirmation link, reminders, escalation.

A notice to a partner whose ``channel`` is ``email`` is the same ``kind="webhook"`` outbox row
as any other (its id is the notice's reference, acknowledgements attach to it, the follow-up
list and the staff view show it). When the worker claims it, ``email_notice`` renders what the
webhook body says (the event, only this partner's references and values) in the partner's
language, with a link to ``/partner/confirm/<token>``, and queues that e-mail for the gateway in
one transaction with a ``partner_follow_up`` row. The periodic ``partner.follow_up`` sends a
reminder (a fresh link) every ``DSR_PARTNER_REMINDER_DAYS`` until the partner confirms, and
tells the privacy officer once after ``DSR_PARTNER_ESCALATION_DAYS``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.config import Settings
from app.crypto import Crypto
from app.models import (
    OutboxMessage,
    PartnerFollowUp,
    Processor,
    WebhookAcknowledgement,
    WebhookAttempt,
)
from app.notifications import messages
from app.outbox.jobs import Held, Outcome, Sent, WorkerContext
from app.webhooks import confirmations, notices, processors
from app.webhooks.signing import webhook_id

logger = logging.getLogger("dsr.partners")

NOTICE_TEMPLATE = "partner_notice"
ESCALATION_TEMPLATE = "partner_escalation"
_PARTY_LABELS = {
    "ko": {"processor": "수탁사", "controller": "개인정보를 제공한 개인정보처리자"},
    "en": {"processor": "processor", "controller": "controller"},
}


def follow_up_context(message_id: Any) -> str:
    return f"partner-follow-up:{message_id}"


def confirm_url(settings: Settings, token: str, *, language: str) -> str:
    """The link in a partner's e-mail; the page is Korean or English, so English unless ko."""
    page = "" if language == "ko" else "?lang=en"
    return f"{settings.public_base_url.rstrip('/')}/partner/confirm/{token}{page}"


def _local(settings: Settings, moment: datetime) -> str:
    zone = ZoneInfo(settings.display_timezone)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


async def _queue_email(
    session: AsyncSession,
    *,
    settings: Settings,
    crypto: Crypto,
    now: datetime,
    message: OutboxMessage,
    processor: Processor,
    body: dict[str, Any],
    reminder: int,
    emailed_at: datetime | None,
) -> None:
    address = processors.partner_email(processor, crypto=crypto)
    assert address is not None  # the channel's check constraint
    token, expires = confirmations.issue_token(
        crypto, message_id=message.id, now=now, days=settings.partner_confirm_link_days
    )
    variables = {
        "processor_name": processor.name,
        "event_type": message.topic,
        "webhook_id": webhook_id(message.id),
        "occurred_at": _local(settings, datetime.fromisoformat(body["timestamp"])),
        "records": notices.record_lines(body.get("data") or {}),
        "confirm_url": confirm_url(settings, token, language=processor.language),
        "link_expires": _local(settings, expires),
        "reminder": reminder,
        "emailed_at": _local(settings, emailed_at) if emailed_at else "",
    }
    await messages.queue_notice(
        session,
        crypto=crypto,
        now=now,
        channel="email",
        destination=address,
        template=NOTICE_TEMPLATE,
        variables=variables,
        locale=processor.language,  # type: ignore[arg-type]  # checked at registration
        request_ref=message.request_ref,
        dedupe_key=f"partner-notice:{message.id}:{reminder}:{now.isoformat()}",
    )


async def email_notice(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
    """The e-mail channel of ``deliver_webhook``: queue the notice's e-mail, start its follow-up."""
    now = ctx.clock.now()
    raw = notices.notice_body(payload)
    body = json.loads(raw)
    sealed = ctx.crypto.encrypt(raw, context=follow_up_context(message.id))
    async with ctx.db.transaction() as session:
        processor = (
            await session.exec(select(Processor).where(Processor.code == message.target))
        ).first()
        if processor is None or processor.state != "active" or processor.channel != "email":
            return Held("held: processor disabled or no longer e-mailed")
        await _queue_email(
            session,
            settings=ctx.settings,
            crypto=ctx.crypto,
            now=now,
            message=message,
            processor=processor,
            body=body,
            reminder=0,
            emailed_at=None,
        )
        await session.execute(
            insert(PartnerFollowUp)
            .values(
                message_id=message.id,
                processor_code=processor.code,
                emailed_at=now,
                reminders=0,
                body_encrypted=sealed,
            )
            .on_conflict_do_update(
                index_elements=["message_id"],  # a replay starts the follow-up again
                set_={
                    "emailed_at": now,
                    "reminders": 0,
                    "last_reminded_at": None,
                    "body_encrypted": sealed,
                },
            )
        )
        await session.execute(
            sa.insert(WebhookAttempt).values(
                message_id=message.id,
                processor_code=processor.code,
                event_type=message.topic,
                attempt=message.attempts,
                at=now,
                outcome="emailed",
            )
        )
    logger.info(
        "partner notice e-mailed",
        extra={
            "event": "partner.emailed",
            "processor": message.target,
            "message_id": str(message.id),
        },
    )
    return Sent("e-mailed")


def _unconfirmed() -> Any:
    return ~sa.exists().where(
        col(WebhookAcknowledgement.message_id) == col(PartnerFollowUp.message_id)
    )


async def follow_up_partners(ctx: WorkerContext) -> int:
    """Periodic: remind partners of unconfirmed e-mailed notices; escalate once after M days."""
    settings = ctx.settings
    now = ctx.clock.now()
    every = timedelta(days=settings.partner_reminder_days)
    escalate_after = timedelta(days=settings.partner_escalation_days)
    done = 0
    async with ctx.db.transaction() as session:
        # The UPDATE claims each due row: a second worker in the same slot finds none.
        due = (
            await session.execute(
                sa.update(PartnerFollowUp)
                .where(
                    _unconfirmed(),
                    sa.func.coalesce(
                        col(PartnerFollowUp.last_reminded_at), col(PartnerFollowUp.emailed_at)
                    )
                    <= now - every,
                )
                .values(
                    reminders=col(PartnerFollowUp.reminders) + 1,
                    last_reminded_at=now,
                )
                .returning(col(PartnerFollowUp.message_id), col(PartnerFollowUp.reminders))
            )
        ).all()
        for message_id, reminder in due:
            done += await _remind(ctx, session, now=now, message_id=message_id, reminder=reminder)
        escalated = (
            await session.execute(
                sa.update(PartnerFollowUp)
                .where(
                    _unconfirmed(),
                    col(PartnerFollowUp.escalated_at).is_(None),
                    col(PartnerFollowUp.emailed_at) <= now - escalate_after,
                )
                .values(escalated_at=now)
                .returning(PartnerFollowUp)
            )
        ).scalars()
        for follow_up in list(escalated):
            await _escalate(ctx, session, now=now, follow_up=follow_up)
            done += 1
    return done


async def _remind(
    ctx: WorkerContext, session: AsyncSession, *, now: datetime, message_id: Any, reminder: int
) -> int:
    message = await session.get(OutboxMessage, message_id)
    follow_up = await session.get(PartnerFollowUp, message_id)
    if message is None or follow_up is None or follow_up.body_encrypted is None:
        return 0
    if message.status != "delivered":
        return 0  # replayed: pending again, the new e-mail is on its way
    processor = (
        await session.exec(select(Processor).where(Processor.code == message.target))
    ).first()
    if processor is None or processor.state != "active" or processor.channel != "email":
        return 0
    body = json.loads(
        ctx.crypto.decrypt(follow_up.body_encrypted, context=follow_up_context(message_id))
    )
    await _queue_email(
        session,
        settings=ctx.settings,
        crypto=ctx.crypto,
        now=now,
        message=message,
        processor=processor,
        body=body,
        reminder=reminder,
        emailed_at=follow_up.emailed_at,
    )
    await trail.record(
        session,
        now=now,
        actor="worker",
        role="system",
        action="partner.reminded",
        target_type="webhook",
        target_id=str(message.id),
        details={"processor": processor.code, "reminder": reminder},
    )
    return 1


async def _escalate(
    ctx: WorkerContext, session: AsyncSession, *, now: datetime, follow_up: PartnerFollowUp
) -> None:
    processor = (
        await session.exec(select(Processor).where(Processor.code == follow_up.processor_code))
    ).first()
    message = await session.get(OutboxMessage, follow_up.message_id)
    await trail.record(
        session,
        now=now,
        actor="worker",
        role="system",
        action="partner.escalated",
        target_type="webhook",
        target_id=str(follow_up.message_id),
        details={"processor": follow_up.processor_code, "reminders": follow_up.reminders},
    )
    destination = ctx.settings.privacy_officer_email
    if not destination or message is None:
        logger.warning(
            "no privacy officer address for an escalation",
            extra={
                "event": "partner.escalation_unaddressed",
                "processor": follow_up.processor_code,
            },
        )
        return
    locale = ctx.settings.default_locale if ctx.settings.default_locale in ("ko", "en") else "ko"
    party = processor.party if processor else "processor"
    await messages.queue_notice(
        session,
        crypto=ctx.crypto,
        now=now,
        channel="email",
        destination=destination,
        template=ESCALATION_TEMPLATE,
        variables={
            "processor": follow_up.processor_code,
            "processor_name": processor.name if processor else follow_up.processor_code,
            "party_label": _PARTY_LABELS[locale][party],
            "contact": (processor.contact if processor else None) or "-",
            "event_type": message.topic,
            "webhook_id": webhook_id(message.id),
            "emailed_at": _local(ctx.settings, follow_up.emailed_at),
            "days": int(ctx.settings.partner_escalation_days),
            "reminders": follow_up.reminders,
        },
        locale=locale,
        request_ref=message.request_ref,
        dedupe_key=f"partner-escalation:{follow_up.message_id}",
    )
