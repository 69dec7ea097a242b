"""Review and decisions: approve, refuse (with grounds), withdraw (postponing: ``postponement``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.actors import SYSTEM, Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import (
    Forbidden,
    IllegalTransition,
    InvalidInput,
    NotFound,
)
from app.models import DsrRequest
from app.requests import holds
from app.requests.lifecycle import (
    STATUS_WORDS,
    check_explained,
    check_four_eyes,
    check_ground,
    check_refusal_proposed,
    check_refused_items,
    lock_request,
    notify,
    queue_fulfilment,
    record,
    refuses_everything,
    seal,
    subject_may_see,
    transition,
)

# ---------------------------------------------------------------------------- review and decisions

# The longest explanation to the subject or reason, in characters (the API documents it; the
# console's form says so).
EXPLANATION_MAX = 2000


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
            "A refusal can only be proposed in review; "
            f"the request is {STATUS_WORDS[request.status]}.",
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
    check_explained(explanation, "A proposed refusal")
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


async def approve_parts(
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
    if not partial and request.type in ("correction", "deletion"):
        # The subject hears that the work has started (and, for a correction, that the data is
        # held back meanwhile); access and suspension finish within moments of approval.
        await notify(
            session,
            crypto=crypto,
            settings=settings,
            request=request,
            template="request_approved",
            key=f"approved:{request.round}",
            now=now,
        )
    if partial:
        await _notify_decision(
            session, crypto=crypto, settings=settings, request=request, now=now, note=explanation
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
            f"A request that is {STATUS_WORDS[request.status]} cannot be approved.",
            current_status=request.status,
            action="approve",
        )
    check_four_eyes(request, actor)
    if refused_items:
        if not actor.is_officer:
            raise Forbidden("Only a privacy officer decides a partial refusal; propose it instead.")
        explanation = check_explained(explanation, "A partial refusal")
        check_refused_items(request, refused_items)
        check_refusal_proposed(request, settings)
        if refuses_everything(request, refused_items):
            # Nothing left to grant: this is a refusal, with the refusal notice (Art. 35(4) etc.).
            await _refuse(
                session,
                crypto=crypto,
                settings=settings,
                now=now,
                request=request,
                actor=actor,
                refusals=refused_items,
                explanation=explanation,
            )
            return request
    await approve_parts(
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


async def approve_automatically(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
) -> bool:
    """The worker approves an OTP-verified access request (``auto_approve_access``); False when
    the request no longer waits (withdrawn, or a person started reviewing it first)."""
    request = await lock_request(session, request_id)
    if request.status != "received":
        return False
    await transition(
        session, crypto=crypto, request=request, action="start_review", actor=SYSTEM, now=now
    )
    request.review_started_at = now
    await approve_parts(
        session, crypto=crypto, settings=settings, request=request, actor=SYSTEM, now=now
    )
    return True


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
            f"A request that is {STATUS_WORDS[request.status]} cannot be refused.",
            current_status=request.status,
            action="refuse",
        )
    check_four_eyes(request, actor)
    check_ground(ground, request.type)
    check_explained(explanation, "A refusal")
    check_refusal_proposed(request, settings)
    await _refuse(
        session,
        crypto=crypto,
        settings=settings,
        now=now,
        request=request,
        actor=actor,
        refusals=[{"item": None, "ground": ground}],
        explanation=explanation,
    )
    return request


async def _refuse(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request: DsrRequest,
    actor: Actor,
    refusals: list[dict[str, Any]],
    explanation: str,
) -> None:
    settled = _settle_proposal(request)
    grounds = sorted({entry["ground"] for entry in refusals})
    request.decision = "refused"
    request.decided_at = now
    request.decided_by = actor.id
    request.refusals = [{**entry, "stage": "decision"} for entry in refusals]
    request.decision_note_encrypted = seal(crypto, request.id, "decision", explanation)
    request.objectable_since = now
    await holds.release_holds(session, request=request, now=now)
    await transition(
        session,
        crypto=crypto,
        request=request,
        action="refuse",
        actor=actor,
        now=now,
        details={
            "ground": grounds[0] if len(grounds) == 1 else None,
            "grounds": grounds,
            "refused_items": [e["item"] for e in refusals if e.get("item")],
            **(settled or {}),
        },
        note=explanation,
    )
    await _notify_decision(
        session, crypto=crypto, settings=settings, request=request, now=now, note=explanation
    )


async def _notify_decision(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    request: DsrRequest,
    now: datetime,
    note: str | None,
) -> None:
    """The decision notice of this round (refusal or partial grant), with its explanation."""
    await notify(
        session,
        crypto=crypto,
        settings=settings,
        request=request,
        template="request_decided",
        key=f"decided:{request.round}",
        now=now,
        explanation=note,
    )


async def withdraw_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
    subject_index: str | None = None,
    subject_indexes: Sequence[str] = (),
) -> DsrRequest:
    """The subject withdraws (in the app, or by telling an agent) before the decision."""
    request = await lock_request(session, request_id)
    if subject_index is not None and not subject_may_see(
        request, {subject_index, *subject_indexes}
    ):
        raise NotFound("No such request.")
    _settle_proposal(request)
    await transition(
        session, crypto=crypto, request=request, action="withdraw", actor=actor, now=now
    )
    request.withdrawn_at = now
    await holds.release_holds(session, request=request, now=now)
    await notify(
        session,
        crypto=crypto,
        settings=settings,
        request=request,
        template="request_withdrawn",
        key="withdrawn",
        now=now,
        extra={
            "by_staff": actor.role != "subject",
            "restriction_lifted": request.type == "correction",
            "consent_kept": request.type == "consent_withdrawal",
        },
    )
    return request
