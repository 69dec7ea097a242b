"""The request state machine: transitions, history events, sealed fields, shared checks.

States: ``received`` → ``in_review`` → ``in_progress`` → ``completed`` | ``partially_completed``;
``in_review`` → ``refused``; ``received`` | ``in_review`` → ``withdrawn``; an upheld objection
reopens ``refused`` | ``partially_completed`` → ``in_review``. Anything else is 409.

Every change writes a history event and an audit entry in the caller's transaction; notices
and fulfilment jobs go through the outbox in that same transaction. The use cases live beside
this module: ``intake``, ``decisions``, ``completion``, ``objections``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import SYSTEM, Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import (
    FourEyesRequired,
    IllegalTransition,
    InvalidInput,
    NotFound,
)
from app.models import DsrRequest, DsrRequestEvent
from app.outbox import queue
from app.outbox.retry import FULFILMENT_RETRY
from app.requests.bodies import refusable_parts
from app.requests.notices import queue_request_notice
from app.subjects import identifiers as subjects
from app.vocabulary import GROUNDS, ITEMS

# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start_review": (frozenset({"received"}), "in_review"),
    "approve": (frozenset({"in_review"}), "in_progress"),
    "refuse": (frozenset({"in_review"}), "refused"),
    "complete": (frozenset({"in_progress"}), "completed"),
    "complete_partially": (frozenset({"in_progress"}), "partially_completed"),
    "withdraw": (frozenset({"received", "in_review"}), "withdrawn"),
    "reopen": (frozenset({"refused", "partially_completed"}), "in_review"),
    # The fulfilment found nothing it may carry out: an officer decides the refusal it proposes.
    "return_to_review": (frozenset({"in_progress"}), "in_review"),
}

# Each refusal written whole: a verb built from the action name reads "start reviewd".
CANNOT = {
    "start_review": "cannot be taken into review",
    "approve": "cannot be approved",
    "refuse": "cannot be refused",
    "complete": "cannot be completed",
    "complete_partially": "cannot be completed in part",
    "withdraw": "cannot be withdrawn",
    "reopen": "cannot be reopened",
    "return_to_review": "cannot be returned to review",
}
# A status as words, for messages: "A request that is in review cannot be approved."
STATUS_WORDS = {
    "received": "received",
    "in_review": "in review",
    "in_progress": "in progress",
    "completed": "completed",
    "partially_completed": "partially completed",
    "refused": "refused",
    "withdrawn": "withdrawn",
}

Outcome = Literal["completed", "partially_completed"]
SUBJECT_INDEXES = ARRAY(sa.String(64))
KINDS: tuple[subjects.IdentifierKind, ...] = ("phone", "email")


@dataclass(frozen=True)
class Intake:
    """Who the request is for and how their identity was verified."""

    identifiers: Sequence[subjects.IdentifierFacts]  # the subject's own, primary first
    notice_identifier: subjects.IdentifierFacts
    intake_channel: str  # app | web | phone | counter
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
    await trail.record(
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
            f"A request that is {STATUS_WORDS[request.status]} {CANNOT[action]}.",
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


def subject_may_see(request: DsrRequest, indexes: set[str]) -> bool:
    """Whether a subject who proved these identifiers sees the request.

    A request made with a subject token covers exactly what the token proved: another token sees
    it only if it proved all of that (one person's two identifiers never open it to a third). A
    request taken by staff is seen by whoever verifies any of its identifiers.
    """
    if request.verification_method == "otp":
        return set(request.subject_indexes) <= indexes
    return bool(set(request.subject_indexes) & indexes)


def check_ground(ground: str, request_type: str) -> None:
    if ground not in GROUNDS:
        raise InvalidInput("The refusal ground is not one of GET /v1/refusal-grounds.")
    if request_type not in GROUNDS[ground].applies_to:
        raise InvalidInput(
            f"The ground {ground} does not apply to requests of type {request_type}."
        )


def check_explained(text: str | None, what: str) -> str:
    """A refusal or a postponement is told to the subject with its reasons: never blank."""
    if not text or not text.strip():
        raise InvalidInput(f"{what} needs an explanation for the subject.")
    return text


def check_refused_items(request: DsrRequest, refused: list[dict[str, str]]) -> None:
    """Each part must be one the request covers, once, with a ground for its type."""
    parts = refusable_parts(request.type, request.scope)
    seen: set[str] = set()
    for position, entry in enumerate(refused):
        if entry["item"] not in parts:
            raise InvalidInput(f"Refused item {position} is not part of this request.")
        if entry["item"] in seen:
            raise InvalidInput(f"Refused item {position} names an item already refused.")
        seen.add(entry["item"])
        check_ground(entry["ground"], request.type)


def refuses_everything(request: DsrRequest, refused: list[dict[str, str]]) -> bool:
    """Whether refusing these parts leaves nothing to grant (then it is a whole refusal)."""
    named = {entry["item"] for entry in refused}
    if request.type in ("correction", "suspension", "consent_withdrawal"):
        return named >= refusable_parts(request.type, request.scope)
    return items_covered(named) >= items_covered(refusable_parts(request.type, request.scope))


def items_covered(codes: set[str]) -> set[str]:
    """Items named directly or through their category."""
    return {code for code, item in ITEMS.items() if code in codes or item.category in codes}


def check_refusal_proposed(request: DsrRequest, settings: Settings) -> None:
    """A refusal, whole or in part, needs two people: one proposes, another officer decides."""
    if not request.proposal and not settings.single_officer_refusals:
        raise FourEyesRequired(
            "A refusal needs a colleague's proposal first: propose it, and another privacy "
            "officer decides (DSR_SINGLE_OFFICER_REFUSALS allows one-person refusals)."
        )


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
    await queue.enqueue(
        session,
        crypto=crypto,
        now=now,
        kind="job",
        topic=topic,
        payload={"request_id": str(request.id)},
        request_ref=request.id,
        dedupe_key=f"fulfil:{request.id}:{request.round}:{request.fulfilment_attempts}",
        max_attempts=FULFILMENT_RETRY.max_attempts,
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
