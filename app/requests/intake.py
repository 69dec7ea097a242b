"""Intake: a request received, checked, and recorded with its deadline."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.actors import SYSTEM, Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import (
    DuplicateRequest,
    InvalidInput,
    Unauthenticated,
)
from app.models import DsrRequest, SubjectIdentifier
from app.models.requests import OPEN_STATUSES
from app.requests import deadlines, holds, idempotency
from app.requests.bodies import scope_of
from app.requests.decisions import approve_parts
from app.requests.lifecycle import (
    KINDS,
    SUBJECT_INDEXES,
    Intake,
    Submitted,
    notify,
    record,
    seal,
    transition,
)
from app.requests.views import summary
from app.schemas.requests import RequestCreate
from app.subjects import identifiers as subjects

# ---------------------------------------------------------------------------- intake


async def _lock_subjects(session: AsyncSession, indexes: list[str]) -> None:
    for index in sorted(set(indexes)):
        await session.execute(
            sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"dsr:{index}", 0)))
        )


async def _open_request_of_type(
    session: AsyncSession, *, request_type: str, indexes: list[str]
) -> uuid.UUID | None:
    return (
        await session.exec(
            select(DsrRequest.id)
            .where(
                col(DsrRequest.type) == request_type,
                col(DsrRequest.status).in_(OPEN_STATUSES),
                col(DsrRequest.subject_indexes).op("&&")(sa.literal(indexes, SUBJECT_INDEXES)),
            )
            .limit(1)
        )
    ).first()


async def _create(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    body: RequestCreate,
    intake: Intake,
    actor: Actor,
) -> DsrRequest:
    indexes = [identifier.blind_index for identifier in intake.identifiers]
    await _lock_subjects(session, indexes)
    open_id = await _open_request_of_type(session, request_type=body.type, indexes=indexes)
    if open_id is not None:
        raise DuplicateRequest(
            f"An open {body.type} request exists: {open_id}. Follow it, or withdraw it first.",
            open_request_id=str(open_id),
        )
    tz = settings.display_timezone
    due = deadlines.due_after(now, days=settings.due_days[body.type], tz=tz)
    request_id = uuid.uuid4()
    stored = body.body()
    request = DsrRequest(
        id=request_id,
        type=body.type,
        status="received",
        subject_index=indexes[0],
        subject_indexes=indexes,
        identifier_ids=[identifier.id for identifier in intake.identifiers],
        notice_identifier_id=intake.notice_identifier.id,
        notice_channel="sms" if intake.notice_identifier.kind == "phone" else "email",
        intake_channel=intake.intake_channel,
        verification_method=intake.verification_method,
        verification=intake.verification,
        locale=body.locale or settings.default_locale,
        scope=scope_of(body.type, stored),
        body_encrypted=seal(crypto, request_id, "body", stored),
        created_by=actor.id,
        received_at=now,
        due_at=due,
        original_due_at=due,
        updated_at=now,
    )
    session.add(request)
    await session.flush()
    await holds.hold_at_intake(session, request=request, body=stored, now=now)
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action="submitted",
        now=now,
        to_status="received",
        details={
            "type": request.type,
            "intake_channel": request.intake_channel,
            "verification_method": request.verification_method,
            "scope": request.scope,
            "due_at": due.isoformat(),
        },
    )
    await notify(
        session,
        crypto=crypto,
        settings=settings,
        request=request,
        template="request_received",
        key="received",
        now=now,
    )
    auto = (
        settings.auto_approve_access
        and request.type == "access"
        and request.verification_method == "otp"
    )
    if auto:
        await transition(
            session, crypto=crypto, request=request, action="start_review", actor=SYSTEM, now=now
        )
        request.review_started_at = now
        await approve_parts(
            session, crypto=crypto, settings=settings, request=request, actor=SYSTEM, now=now
        )
    return request


async def _submit(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    body: RequestCreate,
    fingerprint_body: Any,
    intake_of: Any,
    actor: Actor,
    idempotency_key: str | None,
) -> Submitted:
    claim = None
    if idempotency_key is not None:
        claim = await idempotency.claim_key(
            session,
            principal=actor.id,
            key=idempotency_key,
            fingerprint=idempotency.fingerprint(crypto, fingerprint_body),
            now=now,
            ttl=timedelta(hours=settings.idempotency_ttl_hours),
        )
        if claim.replay is not None:
            return Submitted(answer=claim.replay, replayed=True)
    intake: Intake = await intake_of()
    request = await _create(
        session, crypto=crypto, settings=settings, now=now, body=body, intake=intake, actor=actor
    )
    answer = summary(request, now=now, tz=settings.display_timezone)
    if claim is not None:
        await idempotency.remember_answer(
            session, record_id=claim.record_id, status_code=201, response=answer
        )
    return Submitted(answer=answer, replayed=False)


async def submit_subject_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    subject_index: str,
    body: RequestCreate,
    actor: Actor,
    idempotency_key: str | None = None,
    intake_channel: Literal["app", "web"] = "app",
    also_indexes: Sequence[str] = (),
) -> Submitted:
    """A request from the app or the privacy center, by a subject verified by one-time code.

    ``also_indexes``: further identifiers the same token proved; the request covers them all.
    """

    async def intake_of() -> Intake:
        identifier = await subjects.find_identifier(session, blind_index=subject_index)
        if identifier is None:
            raise Unauthenticated("The verified identifier is not known: verify again.")
        more = [
            await subjects.find_identifier(session, blind_index=index)
            for index in dict.fromkeys(also_indexes)
            if index != subject_index
        ]
        if any(found is None for found in more):
            raise Unauthenticated("The verified identifier is not known: verify again.")
        return Intake(
            identifiers=[identifier, *(found for found in more if found is not None)],
            notice_identifier=identifier,
            intake_channel=intake_channel,
            verification_method="otp",
            verification={"method": "otp", "identifier_kind": identifier.kind},
        )

    return await _submit(
        session,
        crypto=crypto,
        settings=settings,
        now=now,
        body=body,
        fingerprint_body=body.model_dump(mode="json"),
        intake_of=intake_of,
        actor=actor,
        idempotency_key=idempotency_key,
    )


async def submit_staff_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    body: RequestCreate,
    identifiers: dict[str, str],
    notify_via: dict[str, str] | None,
    intake_channel: str,
    verification: dict[str, Any],
    actor: Actor,
    idempotency_key: str | None = None,
) -> Submitted:
    """A request taken by phone or at the counter; identity verified by the agent or via proof."""

    async def intake_of() -> Intake:
        own: list[SubjectIdentifier] = []
        for kind in KINDS:
            raw = identifiers.get(kind)
            if raw:
                value = subjects.normalise(kind, raw)
                own.append(
                    await subjects.remember_identifier(
                        session,
                        crypto=crypto,
                        kind=kind,
                        value=value,
                        now=now,
                    )
                )
        if not own:
            raise InvalidInput("Give the subject's phone number or e-mail address.")
        notice = own[0]
        if notify_via is not None:
            notice_kind: subjects.IdentifierKind = (
                "phone" if notify_via["channel"] == "sms" else "email"
            )
            destination = notify_via.get("destination")
            if destination:
                value = subjects.normalise(notice_kind, destination)
                notice = await subjects.remember_identifier(
                    session,
                    crypto=crypto,
                    kind=notice_kind,
                    value=value,
                    now=now,
                )
            else:
                matching = [identifier for identifier in own if identifier.kind == notice_kind]
                if not matching:
                    raise InvalidInput(f"No {notice_kind} was given to send notices to.")
                notice = matching[0]
        own.sort(key=lambda identifier: identifier.id != notice.id)  # primary: the notified one
        return Intake(
            identifiers=own,
            notice_identifier=notice,
            intake_channel=intake_channel,
            verification_method=verification["method"],
            verification={**verification, "checked_by": actor.id},
        )

    return await _submit(
        session,
        crypto=crypto,
        settings=settings,
        now=now,
        body=body,
        fingerprint_body={
            "request": body.model_dump(mode="json"),
            "identifiers": identifiers,
            "notify": notify_via,
            "intake_channel": intake_channel,
            "verification": verification,
        },
        intake_of=intake_of,
        actor=actor,
        idempotency_key=idempotency_key,
    )
