"""The processors registry: registration, settings, secrets and their rotation, enabling.

Notices are ``kind="webhook"`` outbox rows with ``target`` = the processor's code and ``topic`` =
the event type; the outbox id is the ``webhook-id``. A notice for a processor that is disabled or
not registered is never dropped: it is queued as ``held``, audited, reported to the privacy officer
(``alert_held_notices``), and sent when the processor is registered or enabled again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import Conflict, NotFound, ValidationFailed
from app.models import OutboxMessage, Processor, WebhookAcknowledgement
from app.schemas.processors import ProcessorCreate, ProcessorUpdate
from app.subjects.identifiers import mask
from app.webhooks.notices import (
    WEBHOOK_KIND,
    hold_pending,
    release_held,
)
from app.webhooks.signing import CONTROLLER_EVENT_TYPES, EVENT_TYPES, new_secret, secret_key
from app.webhooks.url_guard import check_webhook_url

logger = logging.getLogger("dsr.processors")


def secret_context(processor_id: uuid.UUID) -> str:
    """AAD binding an encrypted secret to its processor row."""
    return f"processor-secret:{processor_id}"


def email_context(processor_id: uuid.UUID) -> str:
    """AAD binding an encrypted e-mail address to its processor row."""
    return f"processor-email:{processor_id}"


# E-mailed notices are written in these languages; a processor's default comes from its nation.
_LANGUAGE_OF_NATION = {"KR": "ko", "JP": "ja", "CN": "zh-Hans", "TW": "zh-Hant", "HK": "zh-Hant"}


def default_language(nation: str | None) -> str:
    """The language of a processor's e-mails unless it chose one: ko, ja, zh-Hans/Hant, else en."""
    return _LANGUAGE_OF_NATION.get((nation or "").strip().upper(), "en")


def partner_email(processor: Processor, *, crypto: Crypto) -> str | None:
    """The partner's e-mail address, decrypted (only to send to it)."""
    if processor.email_encrypted is None:
        return None
    return crypto.decrypt_str(processor.email_encrypted, context=email_context(processor.id))


def _set_email(processor: Processor, email: str, *, crypto: Crypto) -> None:
    address = email.strip()
    processor.email_encrypted = crypto.encrypt(address, context=email_context(processor.id))
    processor.email_masked = mask("email", address.lower())


def _check_address(processor: Processor) -> None:
    if processor.channel == "webhook" and not processor.webhook_url:
        raise ValidationFailed("/webhook_url", "Required when channel is webhook.")
    if processor.channel == "email" and processor.email_encrypted is None:
        raise ValidationFailed("/email", "Required when channel is email.")


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


async def load_processor(session: AsyncSession, code: str, *, lock: bool = False) -> Processor:
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
        *awaiting_clauses(now - older_than), col(OutboxMessage.target) == code
    )
    return int((await session.execute(query)).scalar_one())


def awaiting_clauses(cutoff: datetime) -> list[Any]:
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
    actor: Actor,
    details: ProcessorCreate,
) -> tuple[Processor, str]:
    """Register a processor; returns it and its secret (shown this once). Releases held notices."""
    if details.webhook_url is not None:
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
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="processor.registered",
        target_type="processor",
        target_id=processor.code,
        client_ip=actor.client_ip,
        details={
            "events": processor.events,
            "state": processor.state,
            "released": released,
            "party": processor.party,
            "channel": processor.channel,
        },
    )
    return processor, secret


def _new_processor(
    *,
    crypto: Crypto,
    now: datetime,
    code: str,
    name: str,
    nation: str,
    webhook_url: str | None = None,
    contact: str | None = None,
    events: list[str] | None = None,
    state: str = "active",
    party: str = "processor",
    channel: str = "webhook",
    email: str | None = None,
    language: str | None = None,
) -> tuple[Processor, str]:
    processor_id = uuid.uuid4()
    secret = new_secret()
    defaults = CONTROLLER_EVENT_TYPES if party == "controller" else EVENT_TYPES
    chosen = list(dict.fromkeys(events or defaults))
    processor = Processor(
        id=processor_id,
        code=code,
        name=name,
        nation=nation,
        contact=contact,
        party=party,
        channel=channel,
        webhook_url=webhook_url,
        language=language or default_language(nation),
        events=chosen,
        state=state,
        disabled_at=now if state == "disabled" else None,
        disabled_reason="registered disabled" if state == "disabled" else None,
        secret_encrypted=crypto.encrypt(secret, context=secret_context(processor_id)),
        created_at=now,
        updated_at=now,
    )
    if email:
        _set_email(processor, email, crypto=crypto)
    _check_address(processor)
    return processor, secret


async def list_processors(session: AsyncSession) -> list[Processor]:
    """Every registered processor, by code."""
    return list((await session.exec(select(Processor).order_by(col(Processor.code)))).all())


async def get_processor(
    session: AsyncSession, *, settings: Settings, now: datetime, code: str
) -> ProcessorView:
    """One processor with its delivery counts by status."""
    processor = await load_processor(session, code)
    return ProcessorView(processor, await _counts(session, code=code, now=now, settings=settings))


async def update_processor(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    actor: Actor,
    code: str,
    changes: ProcessorUpdate,
) -> ProcessorView:
    """Change a processor; disabling holds its pending notices, enabling sends the held ones."""
    processor = await load_processor(session, code, lock=True)
    values = changes.model_dump(exclude_unset=True)
    if values.get("webhook_url") is not None:
        await check_webhook_url(
            values["webhook_url"], env=settings.env, allow_private=settings.allow_private_webhooks
        )
    for name in ("name", "nation", "channel", "email", "language"):
        if name in values and values[name] is None:
            raise ValidationFailed(f"/{name}", "Cannot be removed: leave it out to keep it.")
    email = values.pop("email", None)
    if email is not None:
        _set_email(processor, email, crypto=crypto)
    if "events" in values:
        if values["events"] is None:
            raise ValidationFailed("/events", "Cannot be removed: leave it out to keep it.")
        values["events"] = list(dict.fromkeys(values["events"]))
    new_state = values.pop("state", None)
    for name, value in values.items():
        setattr(processor, name, value)
    _check_address(processor)
    # The address itself never reaches the audit trail: only that it changed.
    details: dict[str, Any] = {"fields": sorted([*values, *(["email"] if email else [])])}
    if new_state == "disabled" and processor.state != "disabled":
        details["held"] = await _disable(session, processor, now=now, reason="disabled by staff")
    elif new_state == "active" and processor.state != "active":
        details["released"] = await _enable(session, processor, now=now)
    processor.updated_at = now
    session.add(processor)
    await session.flush()
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="processor.updated",
        target_type="processor",
        target_id=code,
        client_ip=actor.client_ip,
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
    await trail.record(
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
    actor: Actor,
    code: str,
) -> tuple[Processor, str]:
    """A new secret (shown once); the current one keeps signing through the grace period."""
    processor = await load_processor(session, code, lock=True)
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
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="processor.secret_rotated",
        target_type="processor",
        target_id=code,
        client_ip=actor.client_ip,
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

    Each dict has code, name, nation and optionally contact, events, state, party, channel,
    email, language and webhook_url (default ``<webhook_base_url>/<code>``). Existing processors
    are left as they are. The URLs are trusted (no SSRF check): this is for seeding from code,
    not for user input.
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
        keys = ("contact", "events", "state", "party", "channel", "email", "language")
        values = {key: item[key] for key in keys if key in item}
        by_email = item.get("channel") == "email"
        processor, secret = _new_processor(
            crypto=crypto,
            now=now,
            code=item["code"],
            name=item["name"],
            nation=item["nation"],
            webhook_url=None if by_email else item.get("webhook_url") or f"{base}/{item['code']}",
            **values,
        )
        session.add(processor)
        created[processor.code] = secret
    await session.flush()
    for code in created:
        await release_held(session, code=code, now=now)
    return created
