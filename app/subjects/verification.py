"""Identity verification by one-time code: send a code, confirm it, issue a subject token.

Sending never looks at whether the destination appears in any record, so the answer (status,
body and time taken) cannot tell anyone whether a number or address is known. The code exists in
clear only in the outbox payload (encrypted at rest) and the message itself; the verification
row keeps a keyed HMAC of it. Rate-limit state is the verification rows themselves, in
PostgreSQL, serialised per client and per destination by advisory locks.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import phonenumbers
import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import (
    InvalidInput,
    RateLimited,
    ValidationFailed,
    VerificationCodeWrong,
    VerificationDead,
    VerificationExpired,
    VerificationUnknown,
    VerificationUsed,
)
from app.models import Verification
from app.notifications import messages
from app.outbox.jobs import WorkerContext
from app.security import Principal, TokenService
from app.subjects import identifiers

logger = logging.getLogger("dsr.verifications")
# The notice carrying a one-time code: its outbox payload is destroyed once it is sent.
CODE_TEMPLATE = "verification_code"

Channel = Literal["sms", "email"]
Locale = Literal["ko", "en"]
CHANNEL_KIND: dict[str, identifiers.IdentifierKind] = {"sms": "phone", "email": "email"}
CODE_DIGITS = 6
_SMS_TYPES = (
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
)


@dataclass(frozen=True)
class VerificationStarted:
    id: uuid.UUID
    expires_at: datetime
    masked_destination: str


@dataclass(frozen=True)
class VerificationConfirmed:
    access_token: str
    expires_in: int


def normalise_destination(settings: Settings, channel: Channel, raw: str) -> str:
    """The destination as stored and matched; 422 naming the field (never echoing it)."""
    if channel == "email":
        try:
            return identifiers.normalise_email(raw)
        except InvalidInput:
            raise ValidationFailed("/destination", "The e-mail address is not valid.") from None
    try:
        value = identifiers.normalise_phone(raw)
    except InvalidInput:
        raise ValidationFailed("/destination", "The phone number is not valid.") from None
    number = phonenumbers.parse(value)
    if (
        phonenumbers.region_code_for_number(number) not in settings.verification_sms_regions
        or phonenumbers.number_type(number) not in _SMS_TYPES
    ):
        raise ValidationFailed("/destination", "This number cannot receive codes by SMS.")
    return value


def client_key(client_ip: str) -> str:
    """What one client is for rate limits: its IPv4 address, or its IPv6 /64 network."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def code_mac(crypto: Crypto, verification_id: uuid.UUID, code: str) -> str:
    """The stored form of a code: a keyed HMAC bound to its verification."""
    return crypto.mac("verification-code", f"{verification_id}:{code}")


async def _lock(session: AsyncSession, key: str) -> None:
    await session.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0)))
    )


async def _nth_latest(
    session: AsyncSession, column: Any, value: str, *, since: datetime, n: int
) -> datetime | None:
    """When the n-th most recent code in the window was sent (None: fewer than n)."""
    return (
        await session.exec(
            select(Verification.created_at)
            .where(column == value, col(Verification.created_at) > since)
            .order_by(col(Verification.created_at).desc())
            .offset(max(n, 1) - 1)
            .limit(1)
        )
    ).first()


async def _check_limits(
    session: AsyncSession, settings: Settings, *, now: datetime, destination: str, client: str
) -> None:
    window = timedelta(seconds=settings.verification_window_seconds)
    cooldown = timedelta(seconds=settings.verification_resend_cooldown_seconds)
    since = now - window
    waits: list[timedelta] = []
    last = await _nth_latest(
        session, col(Verification.destination_index), destination, since=now - cooldown, n=1
    )
    if last is not None:
        waits.append(last + cooldown - now)
    for column, value, limit in (
        (
            col(Verification.destination_index),
            destination,
            settings.verification_max_per_destination,
        ),
        (col(Verification.client_mac), client, settings.verification_max_per_client_ip),
    ):
        oldest_counted = await _nth_latest(session, column, value, since=since, n=limit)
        if oldest_counted is not None:
            waits.append(oldest_counted + window - now)
    if waits:
        raise RateLimited(
            "Too many codes were asked for; try again later.",
            retry_after=math.ceil(max(waits).total_seconds()),
        )


async def start_verification(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    channel: Channel,
    destination: str,
    client_ip: str,
    locale: Locale,
    link_to: Principal | None = None,
) -> VerificationStarted:
    """Send a fresh one-time code to a phone or e-mail address (through the outbox).

    ``link_to``: a verified subject adding this identifier; the confirmed token carries both.
    The answer, the limits and the time taken are the same either way.
    """
    value = normalise_destination(settings, channel, destination)
    kind = CHANNEL_KIND[channel]
    if link_to is not None and kind in link_to.identifier_kinds:
        # A request reads one phone and one e-mail (SubjectIdentifiers): a second of the same
        # kind is a plain verification, as it was before identifiers could be added.
        link_to = None
    index = crypto.blind_index(kind, value)
    client = crypto.mac("client-ip", client_key(client_ip))
    # Always client first, then destination: concurrent requests cannot deadlock.
    await _lock(session, f"verification:client:{client}")
    await _lock(session, f"verification:destination:{index}")
    await _check_limits(session, settings, now=now, destination=index, client=client)

    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    ttl = timedelta(seconds=settings.verification_code_ttl_seconds)
    verification = Verification(
        id=uuid.uuid4(),
        channel=channel,
        destination_index=index,
        destination_encrypted=b"",
        code_mac="",
        client_mac=client,
        locale=locale,
        status="pending",
        wrong_attempts=0,
        created_at=now,
        expires_at=now + ttl,
        link_to=None
        if link_to is None
        else {"indexes": list(link_to.indexes), "kinds": list(link_to.identifier_kinds)},
    )
    verification.destination_encrypted = crypto.encrypt(
        value, context=f"verification:{verification.id}"
    )
    verification.code_mac = code_mac(crypto, verification.id, code)
    session.add(verification)
    await session.flush()
    await messages.queue_notice(
        session,
        crypto=crypto,
        now=now,
        channel=channel,
        destination=value,
        template=CODE_TEMPLATE,
        variables={"code": code, "minutes": math.ceil(ttl.total_seconds() / 60)},
        locale=locale,
        max_attempts=settings.verification_notice_max_attempts,
    )
    logger.info("verification started", extra={"event": "verification.started", "channel": channel})
    return VerificationStarted(
        id=verification.id,
        expires_at=verification.expires_at,
        masked_destination=identifiers.mask(kind, value),
    )


async def describe_verification(
    session: AsyncSession, *, crypto: Crypto, now: datetime, verification_id: uuid.UUID
) -> VerificationStarted | None:
    """A pending, unexpired verification as its start answered (the code page, shown again)."""
    verification = await session.get(Verification, verification_id)
    if verification is None or verification.status != "pending" or now >= verification.expires_at:
        return None
    value = crypto.decrypt_str(
        verification.destination_encrypted, context=f"verification:{verification.id}"
    )
    return VerificationStarted(
        id=verification.id,
        expires_at=verification.expires_at,
        masked_destination=identifiers.mask(CHANNEL_KIND[verification.channel], value),
    )


async def confirm_verification(
    session: AsyncSession,
    *,
    crypto: Crypto,
    tokens: TokenService,
    settings: Settings,
    now: datetime,
    verification_id: uuid.UUID,
    code: str,
) -> VerificationConfirmed:
    """Check a code; on success remember the identifier and issue a subject token."""
    verification = await session.get(Verification, verification_id, with_for_update=True)
    if verification is None:
        raise VerificationUnknown("No verification has this id.")
    if verification.status == "confirmed":
        raise VerificationUsed("This code was already used; ask for a new one.")
    max_wrong = settings.verification_max_wrong_attempts
    if verification.status == "dead" or verification.wrong_attempts >= max_wrong:
        raise VerificationDead("Too many wrong codes were tried; ask for a new one.")
    if now >= verification.expires_at:
        raise VerificationExpired("The code has expired; ask for a new one.")

    if not crypto.equal(code_mac(crypto, verification.id, code), verification.code_mac):
        verification.wrong_attempts += 1
        remaining = max(0, max_wrong - verification.wrong_attempts)
        if remaining == 0:
            verification.status = "dead"
            await trail.record(
                session,
                now=now,
                actor=Actor.subject(verification.destination_index, None).id,
                role="subject",
                action="verification.locked",
                target_type="verification",
                target_id=str(verification.id),
                details={"channel": verification.channel, "wrong_attempts": max_wrong},
            )
        await session.flush()
        logger.info(
            "wrong verification code",
            extra={"event": "verification.wrong_code", "channel": verification.channel},
        )
        raise VerificationCodeWrong(
            "The code is not right." if remaining else "The code is not right; ask for a new one.",
            remaining_attempts=remaining,
        )

    kind = CHANNEL_KIND[verification.channel]
    verification.status = "confirmed"
    verification.confirmed_at = now
    value = crypto.decrypt_str(
        verification.destination_encrypted, context=f"verification:{verification.id}"
    )
    await identifiers.remember_identifier(session, crypto=crypto, kind=kind, value=value, now=now)
    await trail.record(
        session,
        now=now,
        actor=Actor.subject(verification.destination_index, None).id,
        role="subject",
        action="verification.confirmed",
        target_type="verification",
        target_id=str(verification.id),
        details={"channel": verification.channel},
    )
    await session.flush()
    ttl = timedelta(seconds=settings.subject_token_ttl_seconds)
    link = verification.link_to or {}
    indexes = [*link.get("indexes", []), verification.destination_index]
    kinds = list(dict.fromkeys([*link.get("kinds", []), kind]))
    token = tokens.issue_subject_token(
        blind_index=indexes[0],
        identifier_kinds=kinds,
        now=now,
        ttl=ttl,
        also_indexes=list(dict.fromkeys(indexes[1:])),
    )
    logger.info(
        "verification confirmed",
        extra={"event": "verification.confirmed", "channel": verification.channel},
    )
    return VerificationConfirmed(
        access_token=token,
        expires_in=int(ttl.total_seconds()),
    )


async def purge_verifications(ctx: WorkerContext) -> int:
    """Periodic job: delete verifications older than the retention (and the limit window)."""
    settings = ctx.settings
    keep = max(
        timedelta(hours=settings.verification_retention_hours),
        timedelta(seconds=settings.verification_window_seconds),
    )
    async with ctx.db.transaction() as session:
        result = await session.execute(
            sa.delete(Verification).where(col(Verification.created_at) < ctx.clock.now() - keep)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
