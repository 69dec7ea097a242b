"""The request lifecycle: intake, review, decisions, deadlines, fulfilment hand-off, completion.

States: ``received`` → ``in_review`` → ``in_progress`` → ``completed`` | ``partially_completed``;
``in_review`` → ``refused``; ``received`` | ``in_review`` → ``withdrawn``; an upheld objection
reopens ``refused`` | ``partially_completed`` → ``in_review``. Anything else is 409.

Every change writes a history event and an audit entry in the caller's transaction; notices
and fulfilment jobs go through the outbox in that same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.errors import (
    DuplicateRequest,
    Forbidden,
    FourEyesRequired,
    IllegalTransition,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from app.models import DsrRequest, DsrRequestEvent, SubjectIdentifier
from app.models.requests import OPEN_STATUSES
from app.schemas.requests import RequestCreate
from app.services import audit, deadlines, idempotency, outbox, request_holds, subjects
from app.services.actors import SYSTEM, Actor
from app.services.crypto import Crypto
from app.services.request_bodies import refusable_parts, scope_of
from app.services.request_notices import queue_request_notice
from app.services.request_views import summary
from app.services.vocabulary import GROUNDS

# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start_review": (frozenset({"received"}), "in_review"),
    "approve": (frozenset({"in_review"}), "in_progress"),
    "refuse": (frozenset({"in_review"}), "refused"),
    "complete": (frozenset({"in_progress"}), "completed"),
    "complete_partially": (frozenset({"in_progress"}), "partially_completed"),
    "withdraw": (frozenset({"received", "in_review"}), "withdrawn"),
    "reopen": (frozenset({"refused", "partially_completed"}), "in_review"),
}

Outcome = Literal["completed", "partially_completed"]
SUBJECT_INDEXES = ARRAY(sa.String(64))
# A fulfilment job retried this often (about a day with the default backoff) is marked failed.
FULFILMENT_MAX_ATTEMPTS = 8
KINDS: tuple[subjects.IdentifierKind, ...] = ("phone", "email")


@dataclass(frozen=True)
class Intake:
    """Who the request is for and how their identity was verified."""

    identifiers: list[SubjectIdentifier]  # the subject's own, primary first
    notice_identifier: SubjectIdentifier
    intake_channel: str  # app | phone | counter
    verification_method: str  # otp | agent | representative
    verification: dict[str, Any]


@dataclass(frozen=True)
class Submitted:
    answer: dict[str, Any]  # the 201 body; the same one again for a replayed Idempotency-Key
    replayed: bool


# ---------------------------------------------------------------------------- helpers


def seal(crypto: Crypto, request_id: uuid.UUID, field: str, value: Any) -> bytes:
    return crypto.encrypt_json(value, context=f"dsr_request:{request_id}:{field}")


def unseal(crypto: Crypto, request_id: uuid.UUID, field: str, sealed: bytes | None) -> Any:
    if sealed is None:
        return None
    return crypto.decrypt_json(sealed, context=f"dsr_request:{request_id}:{field}")


async def lock_request(session: AsyncSession, request_id: uuid.UUID) -> DsrRequest:
    """The request, locked for update; NotFound if there is none."""
    found = (
        await session.exec(
            select(DsrRequest).where(col(DsrRequest.id) == request_id).with_for_update()
        )
    ).first()
    if found is None:
        raise NotFound("No such request.")
    return found


async def load_request(session: AsyncSession, *, request_id: uuid.UUID) -> DsrRequest:
    """The request row (not locked); NotFound if there is none."""
    found = await session.get(DsrRequest, request_id)
    if found is None:
        raise NotFound("No such request.")
    return found


async def load_request_body(
    session: AsyncSession, *, crypto: Crypto, request_id: uuid.UUID
) -> dict[str, Any]:
    """The type-specific body, decrypted (corrections hold personal data: never log it)."""
    request = await load_request(session, request_id=request_id)
    body: dict[str, Any] = unseal(crypto, request.id, "body", request.body_encrypted)
    return body


async def record(
    session: AsyncSession,
    *,
    crypto: Crypto,
    request: DsrRequest,
    actor: Actor,
    action: str,
    now: datetime,
    from_status: str | None = None,
    to_status: str | None = None,
    details: dict[str, Any] | None = None,
    note: str | None = None,
) -> None:
    """One history event and one audit entry (details hold codes and ids, never personal data)."""
    session.add(
        DsrRequestEvent(
            request_id=request.id,
            at=now,
            actor=actor.id,
            role=actor.role,
            action=action,
            from_status=from_status,
            to_status=to_status,
            details=details or {},
            note_encrypted=seal(crypto, request.id, "note", note) if note else None,
        )
    )
    audit_details = dict(details or {})
    if from_status or to_status:
        audit_details.update({"from": from_status, "to": to_status})
    await audit.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action=f"request.{action}",
        target_type="request",
        target_id=str(request.id),
        client_ip=actor.client_ip,
        details=audit_details,
    )


async def transition(
    session: AsyncSession,
    *,
    crypto: Crypto,
    request: DsrRequest,
    action: str,
    actor: Actor,
    now: datetime,
    details: dict[str, Any] | None = None,
    note: str | None = None,
) -> None:
    """Move the request by ``action`` or raise IllegalTransition (409) naming the current state."""
    allowed, target = TRANSITIONS[action]
    if request.status not in allowed:
        raise IllegalTransition(
            f"A request that is {request.status} cannot be {action.replace('_', ' ')}d.",
            current_status=request.status,
            action=action,
        )
    previous = request.status
    request.status = target
    request.updated_at = now
    session.add(request)
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action=action,
        now=now,
        from_status=previous,
        to_status=target,
        details=details,
        note=note,
    )


async def notify(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    request: DsrRequest,
    template: str,
    key: str,
    now: datetime,
    explanation: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Queue a notice once (by ``key``) and record it in the history and the audit trail."""
    message_id = await queue_request_notice(
        session,
        crypto=crypto,
        settings=settings,
        request=request,
        template=template,
        key=key,
        now=now,
        explanation=explanation,
        extra=extra,
    )
    if message_id is None:
        return
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=SYSTEM,
        action="notice_queued",
        now=now,
        details={
            "template": template,
            "channel": request.notice_channel,
            "message_id": str(message_id),
        },
    )


def check_ground(ground: str, request_type: str) -> None:
    if ground not in GROUNDS:
        raise InvalidInput("The refusal ground is not one of GET /v1/refusal-grounds.")
    if request_type not in GROUNDS[ground].applies_to:
        raise InvalidInput(f"The ground {ground} does not apply to a {request_type} request.")


def check_refused_items(request: DsrRequest, refused: list[dict[str, str]]) -> None:
    """Each part must be one the request covers, with a ground for its type; not all of them."""
    parts = refusable_parts(request.type, request.scope)
    seen: set[str] = set()
    for position, entry in enumerate(refused):
        if entry["item"] not in parts:
            raise InvalidInput(f"Refused item {position} is not part of this request.")
        if entry["item"] in seen:
            raise InvalidInput(f"Refused item {position} names an item already refused.")
        seen.add(entry["item"])
        check_ground(entry["ground"], request.type)
    finite = request.type in ("correction", "suspension", "consent_withdrawal")
    if finite and seen >= parts:
        raise InvalidInput("Every part is refused: refuse the whole request instead.")


def check_four_eyes(request: DsrRequest, actor: Actor) -> None:
    """A proposed refusal is decided by a privacy officer other than the one who proposed it."""
    proposal = request.proposal
    if not proposal:
        return
    if proposal.get("by") == actor.id:
        raise FourEyesRequired("You proposed this refusal; another privacy officer decides it.")
    if not actor.is_officer:
        raise FourEyesRequired("A refusal was proposed; a privacy officer decides this request.")


async def queue_fulfilment(
    session: AsyncSession, *, crypto: Crypto, request: DsrRequest, now: datetime, actor: Actor
) -> None:
    """Queue the job ``fulfil.<type>`` with ``{"request_id": ...}`` for the worker."""
    request.fulfilment_attempts += 1
    request.fulfilment_state = "queued"
    request.fulfilment_error = None
    session.add(request)
    topic = f"fulfil.{request.type}"
    await outbox.enqueue(
        session,
        crypto=crypto,
        now=now,
        kind="job",
        topic=topic,
        payload={"request_id": str(request.id)},
        request_ref=request.id,
        dedupe_key=f"fulfil:{request.id}:{request.round}:{request.fulfilment_attempts}",
        max_attempts=FULFILMENT_MAX_ATTEMPTS,
    )
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action="fulfilment_queued",
        now=now,
        details={"topic": topic, "attempt": request.fulfilment_attempts},
    )


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
    await request_holds.hold_at_intake(session, request=request, body=stored, now=now)
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
        await _approve(
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
) -> Submitted:
    """A request from the app, by a subject who verified an identifier with a one-time code."""

    async def intake_of() -> Intake:
        identifier = await subjects.find_identifier(session, blind_index=subject_index)
        if identifier is None:
            raise Unauthenticated("The verified identifier is not known: verify again.")
        return Intake(
            identifiers=[identifier],
            notice_identifier=identifier,
            intake_channel="app",
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


# ---------------------------------------------------------------------------- review and decisions


async def start_review(
    session: AsyncSession, *, crypto: Crypto, now: datetime, request_id: uuid.UUID, actor: Actor
) -> DsrRequest:
    """A staff member takes the request into review."""
    request = await lock_request(session, request_id)
    await transition(
        session, crypto=crypto, request=request, action="start_review", actor=actor, now=now
    )
    request.review_started_at = now
    return request


async def propose_refusal(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
    ground: str | None,
    refused_items: list[dict[str, str]] | None,
    explanation: str,
) -> DsrRequest:
    """Propose refusing the whole request (``ground``) or parts of it, for an officer to decide."""
    request = await lock_request(session, request_id)
    if request.status != "in_review":
        raise IllegalTransition(
            f"A refusal can only be proposed in review; the request is {request.status}.",
            current_status=request.status,
            action="propose_refusal",
        )
    if request.proposal:
        raise IllegalTransition(
            "A proposal is already waiting for a privacy officer.",
            current_status=request.status,
            action="propose_refusal",
        )
    if (ground is None) == (not refused_items):
        raise InvalidInput("Give either a ground (whole request) or refused_items (part of it).")
    if ground is not None:
        check_ground(ground, request.type)
    else:
        check_refused_items(request, refused_items or [])
    request.proposal = {
        "by": actor.id,
        "role": actor.role,
        "at": now.isoformat(),
        "ground": ground,
        "refused_items": refused_items or [],
    }
    request.proposal_note_encrypted = seal(crypto, request.id, "proposal", explanation)
    request.updated_at = now
    session.add(request)
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action="refusal_proposed",
        now=now,
        details={"ground": ground, "refused_items": refused_items or []},
        note=explanation,
    )
    return request


def _settle_proposal(request: DsrRequest) -> dict[str, Any] | None:
    proposal = request.proposal
    request.proposal = None
    request.proposal_note_encrypted = None
    return {"proposed_by": proposal["by"]} if proposal else None


async def _approve(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    request: DsrRequest,
    actor: Actor,
    now: datetime,
    refused_items: list[dict[str, str]] | None = None,
    explanation: str | None = None,
) -> None:
    partial = bool(refused_items)
    settled = _settle_proposal(request)
    request.decision = "partially_approved" if partial else "approved"
    request.decided_at = now
    request.decided_by = actor.id
    request.refusals = [{**entry, "stage": "decision"} for entry in refused_items or []]
    request.decision_note_encrypted = (
        seal(crypto, request.id, "decision", explanation) if explanation else None
    )
    await transition(
        session,
        crypto=crypto,
        request=request,
        action="approve",
        actor=actor,
        now=now,
        details={
            "decision": request.decision,
            "refused_items": refused_items or [],
            "automatic": actor is SYSTEM,
            **(settled or {}),
        },
        note=explanation,
    )
    await queue_fulfilment(session, crypto=crypto, request=request, now=now, actor=actor)
    if partial:
        await notify(
            session,
            crypto=crypto,
            settings=settings,
            request=request,
            template="request_decided",
            key=f"decided:{request.round}",
            now=now,
            explanation=explanation,
        )


async def approve_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
    refused_items: list[dict[str, str]] | None = None,
    explanation: str | None = None,
) -> DsrRequest:
    """Grant the request (or part of it: a partial refusal is a privacy officer's decision)."""
    request = await lock_request(session, request_id)
    if request.status != "in_review":
        raise IllegalTransition(
            f"A request that is {request.status} cannot be approved.",
            current_status=request.status,
            action="approve",
        )
    check_four_eyes(request, actor)
    if refused_items:
        if not actor.is_officer:
            raise Forbidden("Only a privacy officer decides a partial refusal; propose it instead.")
        if not explanation:
            raise InvalidInput("A partial refusal needs an explanation for the subject.")
        check_refused_items(request, refused_items)
    await _approve(
        session,
        crypto=crypto,
        settings=settings,
        request=request,
        actor=actor,
        now=now,
        refused_items=refused_items,
        explanation=explanation,
    )
    return request


async def refuse_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
    ground: str,
    explanation: str,
) -> DsrRequest:
    """Refuse the whole request on a legal ground (privacy officer; not their own proposal)."""
    request = await lock_request(session, request_id)
    if not actor.is_officer:
        raise Forbidden("Only a privacy officer refuses a request; propose the refusal instead.")
    if request.status != "in_review":
        raise IllegalTransition(
            f"A request that is {request.status} cannot be refused.",
            current_status=request.status,
            action="refuse",
        )
    check_four_eyes(request, actor)
    check_ground(ground, request.type)
    settled = _settle_proposal(request)
    request.decision = "refused"
    request.decided_at = now
    request.decided_by = actor.id
    request.refusals = [{"item": None, "ground": ground, "stage": "decision"}]
    request.decision_note_encrypted = seal(crypto, request.id, "decision", explanation)
    request.objectable_since = now
    await request_holds.release_holds(session, request=request, now=now)
    await transition(
        session,
        crypto=crypto,
        request=request,
        action="refuse",
        actor=actor,
        now=now,
        details={"ground": ground, **(settled or {})},
        note=explanation,
    )
    await notify(
        session,
        crypto=crypto,
        settings=settings,
        request=request,
        template="request_decided",
        key=f"decided:{request.round}",
        now=now,
        explanation=explanation,
    )
    return request


async def extend_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
    reason: str,
    new_due_at: datetime,
) -> DsrRequest:
    """Postpone the due date for a stated reason, and tell the subject both."""
    request = await lock_request(session, request_id)
    if request.status not in OPEN_STATUSES:
        raise IllegalTransition(
            f"A request that is {request.status} has no deadline to extend.",
            current_status=request.status,
            action="extend",
        )
    tz = settings.display_timezone
    due = deadlines.end_of_local_day(deadlines.local_date(new_due_at, tz), tz)
    if due <= request.due_at:
        raise InvalidInput("The new due date must be after the current one.")
    latest = deadlines.due_after(request.received_at, days=settings.extension_max_days, tz=tz)
    if due > latest:
        raise InvalidInput(
            f"The due date may not be more than {settings.extension_max_days} days after receipt."
        )
    previous = request.due_at
    request.due_at = due
    request.extensions += 1
    request.updated_at = now
    session.add(request)
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action="extended",
        now=now,
        details={
            "from_due_at": previous.isoformat(),
            "to_due_at": due.isoformat(),
            "extension": request.extensions,
            "after_deadline": now > previous,
        },
        note=reason,
    )
    await notify(
        session,
        crypto=crypto,
        settings=settings,
        request=request,
        template="request_postponed",
        key=f"postponed:{request.extensions}",
        now=now,
        explanation=reason,
    )
    return request


async def withdraw_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
    subject_index: str | None = None,
) -> DsrRequest:
    """The subject withdraws (in the app, or by telling an agent) before the decision."""
    request = await lock_request(session, request_id)
    if subject_index is not None and subject_index not in request.subject_indexes:
        raise NotFound("No such request.")
    _settle_proposal(request)
    await transition(
        session, crypto=crypto, request=request, action="withdraw", actor=actor, now=now
    )
    request.withdrawn_at = now
    await request_holds.release_holds(session, request=request, now=now)
    return request


# ---------------------------------------------------------------------------- fulfilment


def _fulfilment_refusals(
    refused_items: list[dict[str, Any]] | None, request_type: str
) -> list[dict[str, Any]]:
    entries = []
    for entry in refused_items or []:
        item, ground = entry.get("item"), entry.get("ground")
        if not isinstance(ground, str):
            raise InvalidInput("Each refused item needs a ground.")
        check_ground(ground, request_type)
        entries.append({"item": item, "ground": ground, "stage": "fulfilment"})
    return entries


async def complete_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    outcome: Outcome,
    result: dict[str, Any],
    refused_items: list[dict[str, Any]] | None = None,
    actor: Actor = SYSTEM,
    notice_extra: dict[str, Any] | None = None,
) -> DsrRequest:
    """Record the fulfilment's result, tell the subject, audit. Idempotent once completed.

    ``refused_items`` ([{"item", "ground"}]) are parts the fulfilment could not grant (e.g. kept
    under PIPA Art. 36(1) proviso). Any refusal, here or in the decision, makes the outcome
    ``partially_completed``. ``result`` is stored encrypted.
    """
    request = await lock_request(session, request_id)
    if request.status in ("completed", "partially_completed"):
        return request
    more = _fulfilment_refusals(refused_items, request.type)
    if outcome == "partially_completed" and not (more or request.refusals):
        raise InvalidInput("A partial completion names the refused items and their grounds.")
    request.refusals = [*request.refusals, *more]
    partial = outcome == "partially_completed" or bool(request.refusals)
    request.result_encrypted = seal(crypto, request.id, "result", result)
    request.fulfilment_state = "done"
    request.fulfilment_error = None
    request.completed_at = now
    if partial:
        request.objectable_since = now
    await request_holds.release_after_completion(session, request=request, now=now)
    await transition(
        session,
        crypto=crypto,
        request=request,
        action="complete_partially" if partial else "complete",
        actor=actor,
        now=now,
        details={"refused_items": [{"item": e["item"], "ground": e["ground"]} for e in more]},
    )
    await notify(
        session,
        crypto=crypto,
        settings=settings,
        request=request,
        template="request_completed",
        key=f"completed:{request.round}",
        now=now,
        extra=notice_extra,
    )
    return request


async def fail_fulfilment(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    error: str,
    actor: Actor = SYSTEM,
) -> DsrRequest:
    """Mark the fulfilment failed for an operator to retry; ``error`` must hold no personal data."""
    request = await lock_request(session, request_id)
    if request.status != "in_progress" or request.fulfilment_state == "done":
        return request
    request.fulfilment_state = "failed"
    request.fulfilment_error = error[:200]
    request.updated_at = now
    session.add(request)
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action="fulfilment_failed",
        now=now,
        details={"error": error[:200], "attempt": request.fulfilment_attempts},
    )
    return request


async def retry_fulfilment(
    session: AsyncSession, *, crypto: Crypto, now: datetime, request_id: uuid.UUID, actor: Actor
) -> DsrRequest:
    """Queue the fulfilment job again after a failure."""
    request = await lock_request(session, request_id)
    if request.status != "in_progress" or request.fulfilment_state != "failed":
        raise IllegalTransition(
            "Only a failed fulfilment can be retried.",
            current_status=request.status,
            action="retry_fulfilment",
        )
    await queue_fulfilment(session, crypto=crypto, request=request, now=now, actor=actor)
    return request
