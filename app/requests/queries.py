"""Reading requests: the subject's own, and one request's details for staff.

Every staff read of a request is itself audited. The staff queue is ``queue``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import NotFound
from app.models import DsrObjection, DsrRequest, DsrRequestEvent, SubjectIdentifier
from app.requests import notes, views
from app.requests.lifecycle import SUBJECT_INDEXES, unseal
from app.requests.notices import objection_until
from app.requests.objections import open_text
from app.requests.queue import queue_row
from app.subjects import identifiers as subjects
from app.webhooks import acknowledgements


async def _objection_views(
    session: AsyncSession, *, crypto: Crypto, request_id: uuid.UUID, tz: str
) -> list[dict[str, Any]]:
    rows = (
        await session.exec(
            select(DsrObjection)
            .where(col(DsrObjection.request_id) == request_id)
            .order_by(col(DsrObjection.submitted_at))
        )
    ).all()
    return [
        views.objection(
            row,
            reason=open_text(crypto, row.id, "reason", row.reason_encrypted) or "",
            explanation=open_text(crypto, row.id, "outcome", row.outcome_note_encrypted),
            tz=tz,
        )
        for row in rows
    ]


def _answer(
    request: DsrRequest, *, crypto: Crypto, settings: Settings, now: datetime
) -> dict[str, Any]:
    """What both the subject and staff see of a request's answer."""
    until = objection_until(request, settings)
    return {
        **views.summary(request, now=now, tz=settings.display_timezone),
        "locale": request.locale,
        "body": unseal(crypto, request.id, "body", request.body_encrypted),
        "decision": views.decision(
            request,
            explanation=unseal(crypto, request.id, "decision", request.decision_note_encrypted),
            locale=request.locale,
        ),
        "fulfilment_refusals": [
            views.refusal(entry, locale=request.locale)
            for entry in request.refusals
            if entry.get("stage") == "fulfilment"
        ],
        "completed_at": request.completed_at.isoformat() if request.completed_at else None,
        "withdrawn_at": request.withdrawn_at.isoformat() if request.withdrawn_at else None,
        "objection_until": until.isoformat()
        if until and request.status in ("refused", "partially_completed")
        else None,
    }


def _mine(subject_index: str, subject_indexes: Sequence[str]) -> Any:
    """The requests this subject sees (``lifecycle.subject_may_see``, in SQL)."""
    indexes = sa.literal(list(dict.fromkeys([subject_index, *subject_indexes])), SUBJECT_INDEXES)
    column = col(DsrRequest.subject_indexes)
    return sa.or_(
        sa.and_(col(DsrRequest.verification_method) != "otp", column.op("&&")(indexes)),
        column.op("<@")(indexes),
    )


async def list_subject_requests(
    session: AsyncSession,
    *,
    settings: Settings,
    now: datetime,
    subject_index: str,
    subject_indexes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The subject's own requests, newest first."""
    rows = (
        await session.exec(
            select(DsrRequest)
            .where(_mine(subject_index, subject_indexes))
            .order_by(col(DsrRequest.received_at).desc(), col(DsrRequest.id))
            .limit(200)
        )
    ).all()
    return [views.summary(row, now=now, tz=settings.display_timezone) for row in rows]


async def find_subject_request(
    session: AsyncSession,
    *,
    request_id: uuid.UUID,
    subject_index: str,
    subject_indexes: Sequence[str] = (),
) -> DsrRequest:
    """The request if it was made under one of this subject's identifiers, else NotFound."""
    request = (
        await session.exec(
            select(DsrRequest).where(
                col(DsrRequest.id) == request_id, _mine(subject_index, subject_indexes)
            )
        )
    ).first()
    if request is None:
        raise NotFound("No such request.")
    return request


async def get_subject_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    subject_index: str,
    subject_indexes: Sequence[str] = (),
) -> dict[str, Any]:
    """One of the subject's own requests; another subject's is NotFound, never Forbidden."""
    request = await find_subject_request(
        session, request_id=request_id, subject_index=subject_index, subject_indexes=subject_indexes
    )
    return {
        **_answer(request, crypto=crypto, settings=settings, now=now),
        "objections": await _objection_views(
            session, crypto=crypto, request_id=request.id, tz=settings.display_timezone
        ),
    }


async def view_staff_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
) -> dict[str, Any]:
    """Everything about a request, with its full history; the read is audited."""
    request = await session.get(DsrRequest, request_id)
    if request is None:
        raise NotFound("No such request.")
    identifiers = (
        await session.exec(
            select(SubjectIdentifier).where(col(SubjectIdentifier.id).in_(request.identifier_ids))
        )
    ).all()
    events = (
        await session.exec(
            select(DsrRequestEvent)
            .where(col(DsrRequestEvent.request_id) == request.id)
            .order_by(col(DsrRequestEvent.id))
        )
    ).all()
    proposal = None
    if request.proposal:
        proposal = {
            **request.proposal,
            "explanation": unseal(crypto, request.id, "proposal", request.proposal_note_encrypted),
        }
    view = {
        **_answer(request, crypto=crypto, settings=settings, now=now),
        **queue_row(request, now=now, tz=settings.display_timezone),
        "original_due_at": request.original_due_at.isoformat(),
        "verification": request.verification,
        "notice_channel": request.notice_channel,
        "identifiers": [
            {
                "kind": row.kind,
                "masked": subjects.mask(row.kind, subjects.reveal(crypto, row)),  # type: ignore[arg-type]
            }
            for row in identifiers
        ],
        "proposal": proposal,
        "fulfilment": {
            "state": request.fulfilment_state,
            "attempts": request.fulfilment_attempts,
            "error": request.fulfilment_error,
        },
        "result": unseal(crypto, request.id, "result", request.result_encrypted),
        "objections": await _objection_views(
            session, crypto=crypto, request_id=request.id, tz=settings.display_timezone
        ),
        "history": [
            views.event(row, note=unseal(crypto, request.id, "note", row.note_encrypted))
            for row in events
        ],
        "processor_notices": await acknowledgements.processor_confirmations(
            session, crypto=crypto, request_ref=request.id
        ),
        "notes": await notes.notes_of(session, crypto=crypto, request_id=request.id),
    }
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="request.viewed",
        target_type="request",
        target_id=str(request.id),
        client_ip=actor.client_ip,
        details={"parts": ["body", "identifiers_masked", "history", "result", "notes"]},
    )
    return view


# What a subject sees of the history: status changes and the steps that concern them.
SUBJECT_HISTORY_ACTIONS = frozenset({"extended", "objection_submitted", "objection_decided"})


async def subject_history(
    session: AsyncSession, *, request_id: uuid.UUID, subject_index: str
) -> list[dict[str, Any]]:
    """The request's history as its subject sees it: when, what, and the status it led to.

    Never staff notes or who acted; another subject's request is NotFound.
    """
    request = await find_subject_request(
        session, request_id=request_id, subject_index=subject_index
    )
    events = (
        await session.exec(
            select(DsrRequestEvent)
            .where(col(DsrRequestEvent.request_id) == request.id)
            .order_by(col(DsrRequestEvent.id))
        )
    ).all()
    return [
        {"at": row.at.isoformat(), "action": row.action, "to_status": row.to_status}
        for row in events
        if (row.to_status and row.to_status != row.from_status)
        or row.action in SUBJECT_HISTORY_ACTIONS
    ]
