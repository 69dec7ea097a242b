"""The processors registry and the notices queued for them (one outbox row per event and processor).

Notices are ``kind="webhook"`` outbox rows with ``target`` = the processor's code and ``topic`` =
the event type; the outbox id is the ``webhook-id``. A notice for a processor that is disabled or
not registered is never dropped: it is queued as ``held``, audited, reported to the privacy officer
(``alert_held_notices``), and sent when the processor is registered or enabled again.
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.errors import Conflict, InvalidInput, NotFound
from app.models import OutboxMessage, Processor, WebhookAcknowledgement, WebhookAttempt
from app.schemas.processors import BulkReplay, ProcessorCreate, ProcessorUpdate
from app.security import Principal
from app.services import audit, outbox
from app.services.crypto import Crypto
from app.services.webhooks import (
    EVENT_TYPES,
    check_webhook_url,
    event_body,
    new_secret,
    secret_key,
)

logger = logging.getLogger("dsr.processors")

WEBHOOK_KIND = "webhook"
# Immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h: ten tries over ~3 days.
RETRY_SCHEDULE_SECONDS = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MAX_ATTEMPTS = len(RETRY_SCHEDULE_SECONDS)


def secret_context(processor_id: uuid.UUID) -> str:
    """AAD binding an encrypted secret to its processor row."""
    return f"processor-secret:{processor_id}"


def actor_role(principal: Principal) -> str:
    """The role an audit entry names for a staff principal."""
    for role in ("admin", "privacy_officer", "support_agent", "service"):
        if principal.has_any(role):
            return role
    return principal.kind


def signing_keys(processor: Processor, *, crypto: Crypto, now: datetime) -> list[bytes]:
    """The HMAC keys that sign for this processor now: current, and previous during the grace."""
    context = secret_context(processor.id)
    keys = [secret_key(crypto.decrypt_str(processor.secret_encrypted, context=context))]
    if (
        processor.previous_secret_encrypted is not None
        and processor.previous_secret_expires_at is not None
        and now < processor.previous_secret_expires_at
    ):
        previous = crypto.decrypt_str(processor.previous_secret_encrypted, context=context)
        keys.append(secret_key(previous))
    return keys


# --- registry -------------------------------------------------------------------------------


@dataclass
class ProcessorView:
    processor: Processor
    counts: dict[str, int] = field(default_factory=dict)


async def _load(session: AsyncSession, code: str, *, lock: bool = False) -> Processor:
    query = select(Processor).where(Processor.code == code)
    if lock:
        query = query.with_for_update()
    processor = (await session.exec(query)).first()
    if processor is None:
        raise NotFound("No processor with this code.")
    return processor


async def _counts(
    session: AsyncSession, *, code: str, now: datetime, settings: Settings
) -> dict[str, int]:
    rows = await session.execute(
        sa.select(col(OutboxMessage.status), sa.func.count())
        .where(col(OutboxMessage.kind) == WEBHOOK_KIND, col(OutboxMessage.target) == code)
        .group_by(col(OutboxMessage.status))
    )
    counts = {status: count for status, count in rows.all()}
    counts["awaiting_acknowledgement"] = await _count_awaiting(
        session, now=now, older_than=timedelta(days=settings.webhook_ack_follow_up_days), code=code
    )
    return counts


async def _count_awaiting(
    session: AsyncSession, *, now: datetime, older_than: timedelta, code: str
) -> int:
    query = sa.select(sa.func.count()).where(
        *_awaiting_clauses(now - older_than), col(OutboxMessage.target) == code
    )
    return int((await session.execute(query)).scalar_one())


def _awaiting_clauses(cutoff: datetime) -> list[Any]:
    acknowledged = sa.exists().where(
        col(WebhookAcknowledgement.message_id) == col(OutboxMessage.id)
    )
    return [
        col(OutboxMessage.kind) == WEBHOOK_KIND,
        col(OutboxMessage.status) == "delivered",
        col(OutboxMessage.delivered_at) <= cutoff,
        ~acknowledged,
    ]


async def register_processor(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    actor: Principal,
    client_ip: str | None,
    details: ProcessorCreate,
) -> tuple[Processor, str]:
    """Register a processor; returns it and its secret (shown this once). Releases held notices."""
    await check_webhook_url(
        details.webhook_url, env=settings.env, allow_private=settings.allow_private_webhooks
    )
    existing = (
        await session.exec(select(Processor.id).where(Processor.code == details.code))
    ).first()
    if existing is not None:
        raise Conflict("A processor with this code exists.")
    processor, secret = _new_processor(crypto=crypto, now=now, **details.model_dump())
    session.add(processor)
    await session.flush()
    released = (
        await release_held(session, code=processor.code, now=now)
        if processor.state == "active"
        else 0
    )
    await audit.record(
        session,
        now=now,
        actor=actor.subject,
        role=actor_role(actor),
        action="processor.registered",
        target_type="processor",
        target_id=processor.code,
        client_ip=client_ip,
        details={"events": processor.events, "state": processor.state, "released": released},
    )
    return processor, secret


def _new_processor(
    *,
    crypto: Crypto,
    now: datetime,
    code: str,
    name: str,
    nation: str,
    webhook_url: str,
    contact: str | None = None,
    events: list[str] | None = None,
    state: str = "active",
) -> tuple[Processor, str]:
    processor_id = uuid.uuid4()
    secret = new_secret()
    chosen = list(dict.fromkeys(events or EVENT_TYPES))
    processor = Processor(
        id=processor_id,
        code=code,
        name=name,
        nation=nation,
        contact=contact,
        webhook_url=webhook_url,
        events=chosen,
        state=state,
        disabled_at=now if state == "disabled" else None,
        disabled_reason="registered disabled" if state == "disabled" else None,
        secret_encrypted=crypto.encrypt(secret, context=secret_context(processor_id)),
        created_at=now,
        updated_at=now,
    )
    return processor, secret


async def list_processors(session: AsyncSession) -> list[Processor]:
    """Every registered processor, by code."""
    return list((await session.exec(select(Processor).order_by(col(Processor.code)))).all())


async def get_processor(
    session: AsyncSession, *, settings: Settings, now: datetime, code: str
) -> ProcessorView:
    """One processor with its delivery counts by status."""
    processor = await _load(session, code)
    return ProcessorView(processor, await _counts(session, code=code, now=now, settings=settings))


async def update_processor(
    session: AsyncSession,
    *,
    settings: Settings,
    now: datetime,
    actor: Principal,
    client_ip: str | None,
    code: str,
    changes: ProcessorUpdate,
) -> ProcessorView:
    """Change a processor; disabling holds its pending notices, enabling sends the held ones."""
    processor = await _load(session, code, lock=True)
    values = changes.model_dump(exclude_unset=True)
    if values.get("webhook_url") is not None:
        await check_webhook_url(
            values["webhook_url"], env=settings.env, allow_private=settings.allow_private_webhooks
        )
    for name in ("name", "nation", "webhook_url"):
        if name in values and values[name] is None:
            raise InvalidInput(f"{name} cannot be removed.")
    if "events" in values:
        if values["events"] is None:
            raise InvalidInput("events cannot be removed.")
        values["events"] = list(dict.fromkeys(values["events"]))
    new_state = values.pop("state", None)
    for name, value in values.items():
        setattr(processor, name, value)
    details: dict[str, Any] = {"fields": sorted(values)}
    if new_state == "disabled" and processor.state != "disabled":
        details["held"] = await _disable(session, processor, now=now, reason="disabled by staff")
    elif new_state == "active" and processor.state != "active":
        details["released"] = await _enable(session, processor, now=now)
    processor.updated_at = now
    session.add(processor)
    await session.flush()
    await audit.record(
        session,
        now=now,
        actor=actor.subject,
        role=actor_role(actor),
        action="processor.updated",
        target_type="processor",
        target_id=code,
        client_ip=client_ip,
        details={**details, "state": processor.state},
    )
    return ProcessorView(processor, await _counts(session, code=code, now=now, settings=settings))


async def _disable(
    session: AsyncSession, processor: Processor, *, now: datetime, reason: str
) -> int:
    processor.state = "disabled"
    processor.disabled_at = now
    processor.disabled_reason = reason
    return await hold_pending(session, code=processor.code, now=now)


async def _enable(session: AsyncSession, processor: Processor, *, now: datetime) -> int:
    processor.state = "active"
    processor.disabled_at = None
    processor.disabled_reason = None
    processor.failing_since = None
    return await release_held(session, code=processor.code, now=now)


async def disable_processor(
    session: AsyncSession, *, now: datetime, code: str, reason: str, detail: dict[str, Any]
) -> int:
    """The worker disables an endpoint (410 Gone, failing for days); returns notices held."""
    processor = (
        await session.exec(select(Processor).where(Processor.code == code).with_for_update())
    ).first()
    if processor is None or processor.state == "disabled":
        return 0
    held = await _disable(session, processor, now=now, reason=reason)
    processor.updated_at = now
    session.add(processor)
    await session.flush()
    await audit.record(
        session,
        now=now,
        actor="worker",
        role="system",
        action="processor.disabled",
        target_type="processor",
        target_id=code,
        details={"reason": reason, "held": held, **detail},
    )
    return held


async def rotate_secret(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    actor: Principal,
    client_ip: str | None,
    code: str,
) -> tuple[Processor, str]:
    """A new secret (shown once); the current one keeps signing through the grace period."""
    processor = await _load(session, code, lock=True)
    context = secret_context(processor.id)
    current = crypto.decrypt_str(processor.secret_encrypted, context=context)
    secret = new_secret()
    processor.previous_secret_encrypted = crypto.encrypt(current, context=context)
    processor.previous_secret_expires_at = now + timedelta(
        hours=settings.webhook_secret_grace_hours
    )
    processor.secret_encrypted = crypto.encrypt(secret, context=context)
    processor.secret_rotated_at = now
    processor.updated_at = now
    session.add(processor)
    await session.flush()
    await audit.record(
        session,
        now=now,
        actor=actor.subject,
        role=actor_role(actor),
        action="processor.secret_rotated",
        target_type="processor",
        target_id=code,
        client_ip=client_ip,
        details={"previous_expires_at": processor.previous_secret_expires_at.isoformat()},
    )
    return processor, secret


async def ensure_processors(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    processors: list[dict[str, Any]],
    webhook_base_url: str,
) -> dict[str, str]:
    """Seed processors that are missing (the demo); returns {code: secret} for those created.

    Each dict has code, name, nation and optionally contact, events, state and webhook_url
    (default ``<webhook_base_url>/<code>``). Existing processors are left as they are. The URLs
    are trusted (no SSRF check): this is for seeding from code, not for user input.
    """
    codes = [item["code"] for item in processors]
    existing = set(
        (await session.exec(select(Processor.code).where(col(Processor.code).in_(codes)))).all()
    )
    created: dict[str, str] = {}
    base = webhook_base_url.rstrip("/")
    for item in processors:
        if item["code"] in existing or item["code"] in created:
            continue
        values = {key: item[key] for key in ("contact", "events", "state") if key in item}
        processor, secret = _new_processor(
            crypto=crypto,
            now=now,
            code=item["code"],
            name=item["name"],
            nation=item["nation"],
            webhook_url=item.get("webhook_url") or f"{base}/{item['code']}",
            **values,
        )
        session.add(processor)
        created[processor.code] = secret
    await session.flush()
    for code in created:
        await release_held(session, code=code, now=now)
    return created


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
        await audit.record(
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
    message_id = await outbox.enqueue(
        session,
        crypto=crypto,
        now=now,
        kind=WEBHOOK_KIND,
        topic=event_type,
        target=processor_code,
        payload={"body": base64.b64encode(body).decode()},
        request_ref=request_ref,
        max_attempts=MAX_ATTEMPTS,
    )
    assert message_id is not None  # no dedupe key: always inserted
    if processor is None or processor.state != "active":
        reason = "processor not registered" if processor is None else "processor disabled"
        await session.execute(
            sa.update(OutboxMessage)
            .where(col(OutboxMessage.id) == message_id)
            .values(status="held", last_error=f"held: {reason}")
        )
        await audit.record(
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
        await _load(session, code)
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
    actor: Principal,
    client_ip: str | None,
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
    await audit.record(
        session,
        now=now,
        actor=actor.subject,
        role=actor_role(actor),
        action="webhook.replayed",
        target_type="webhook",
        target_id=str(message.id),
        client_ip=client_ip,
        details={"processor": message.target, "previous_status": previous},
    )
    return await get_delivery(session, crypto=crypto, delivery_id=delivery_id)


async def replay_dead_deliveries(
    session: AsyncSession,
    *,
    now: datetime,
    actor: Principal,
    client_ip: str | None,
    code: str,
    options: BulkReplay,
) -> int:
    """Requeue every dead notice to one processor (optionally only recent ones); the count."""
    processor = await _load(session, code)
    if processor.state != "active":
        raise Conflict("The processor is disabled: enable it first.")
    conditions = [
        col(OutboxMessage.kind) == WEBHOOK_KIND,
        col(OutboxMessage.target) == code,
        col(OutboxMessage.status) == "dead",
    ]
    if options.since is not None:
        conditions.append(col(OutboxMessage.created_at) >= options.since)
    result = await session.execute(
        sa.update(OutboxMessage)
        .where(*conditions)
        .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    await audit.record(
        session,
        now=now,
        actor=actor.subject,
        role=actor_role(actor),
        action="webhook.bulk_replayed",
        target_type="processor",
        target_id=code,
        client_ip=client_ip,
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
        .where(*_awaiting_clauses(now - older_than))
        .order_by(col(OutboxMessage.delivered_at))
        .limit(limit)
    )
    if code is not None:
        query = query.where(OutboxMessage.target == code)
    return [DeliveryView(message) for message in (await session.exec(query)).all()]
