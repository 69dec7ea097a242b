"""Objections to decisions (PIPA Art. 38(5)): made within a window, reviewed by a due date.

An objection is possible once the subject has been told of a refusal in the answer (a refused
request or a partial completion), until ``objection_window_days`` after that notice.
One objection per decision round; a privacy officer who did not make the decision reviews it.
Upheld, the request is reopened for a new decision (``in_review``, due by the objection's date).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import (
    DuplicateRequest,
    Forbidden,
    FourEyesRequired,
    IllegalTransition,
    NotFound,
    ObjectionNotAllowed,
)
from app.models import DsrObjection, DsrRequest
from app.models.requests import OPEN_STATUSES
from app.requests import deadlines
from app.requests.lifecycle import (
    SUBJECT_INDEXES,
    lock_request,
    notify,
    record,
    subject_may_see,
    transition,
)
from app.requests.notices import objection_until


def seal_text(crypto: Crypto, objection_id: uuid.UUID, field: str, text: str) -> bytes:
    return crypto.encrypt(text, context=f"dsr_objection:{objection_id}:{field}")


def open_text(
    crypto: Crypto, objection_id: uuid.UUID, field: str, sealed: bytes | None
) -> str | None:
    if sealed is None:
        return None
    return crypto.decrypt_str(sealed, context=f"dsr_objection:{objection_id}:{field}")


async def submit_objection(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    subject_index: str,
    reason: str,
    actor: Actor,
    subject_indexes: Sequence[str] = (),
) -> DsrObjection:
    """The subject objects to a refusal within the window; the objection gets its own due date."""
    request = await lock_request(session, request_id)
    if not subject_may_see(request, {subject_index, *subject_indexes}):
        raise NotFound("No such request.")
    until = objection_until(request, settings)
    if until is None or not request.refusals:
        raise ObjectionNotAllowed("Nothing in this request was refused, so there is no objection.")
    if request.status not in ("refused", "partially_completed"):
        raise ObjectionNotAllowed("An objection can be made once the request is answered.")
    if now > until:
        raise ObjectionNotAllowed(
            "The objection period has ended.", objection_until=until.isoformat()
        )
    existing = (
        await session.exec(
            select(DsrObjection.id).where(
                col(DsrObjection.request_id) == request.id,
                col(DsrObjection.round) == request.round,
            )
        )
    ).first()
    if existing is not None:
        raise ObjectionNotAllowed(
            "An objection to this decision was already made.", objection_id=str(existing)
        )
    objection_id = uuid.uuid4()
    objection = DsrObjection(
        id=objection_id,
        request_id=request.id,
        round=request.round,
        status="open",
        submitted_at=now,
        due_at=deadlines.due_after(
            now, days=settings.objection_due_days, tz=settings.display_timezone
        ),
        reason_encrypted=seal_text(crypto, objection_id, "reason", reason),
    )
    session.add(objection)
    await session.flush()
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action="objection_submitted",
        now=now,
        details={"objection_id": str(objection_id), "due_at": objection.due_at.isoformat()},
    )
    await notify(
        session,
        crypto=crypto,
        settings=settings,
        request=request,
        template="objection_received",
        key=f"objection:{objection_id}:received",
        now=now,
        extra={
            "objection_due_date": deadlines.local_day_text(
                objection.due_at, settings.display_timezone
            )
        },
    )
    return objection


async def decide_objection(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    objection_id: uuid.UUID,
    outcome: Literal["upheld", "dismissed"],
    explanation: str,
    actor: Actor,
) -> DsrObjection:
    """A privacy officer upholds (reopening the request) or dismisses an objection."""
    if not actor.is_officer:
        raise Forbidden("Only a privacy officer decides an objection.")
    objection = (
        await session.exec(
            select(DsrObjection).where(col(DsrObjection.id) == objection_id).with_for_update()
        )
    ).first()
    if objection is None:
        raise NotFound("No such objection.")
    request = await lock_request(session, objection.request_id)
    if objection.status != "open":
        raise IllegalTransition(
            f"The objection was already {objection.status}.",
            current_status=objection.status,
            action="decide_objection",
        )
    if request.decided_by == actor.id:
        raise FourEyesRequired("You made the decision objected to; another officer reviews it.")
    if outcome == "upheld":
        await _refuse_a_second_open_request(session, request)
    objection.status = outcome
    objection.decided_at = now
    objection.decided_by = actor.id
    objection.outcome_note_encrypted = seal_text(crypto, objection.id, "outcome", explanation)
    session.add(objection)
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action="objection_decided",
        now=now,
        details={"objection_id": str(objection.id), "outcome": outcome},
        note=explanation,
    )
    await notify(
        session,
        crypto=crypto,
        settings=settings,
        request=request,
        template="objection_decided",
        key=f"objection:{objection.id}:decided",
        now=now,
        explanation=explanation,
        extra={"outcome": outcome},
    )
    if outcome == "upheld":
        await _reopen(
            session, crypto=crypto, request=request, objection=objection, actor=actor, now=now
        )
    return objection


async def _refuse_a_second_open_request(session: AsyncSession, request: DsrRequest) -> None:
    """Upholding reopens the request: not while the subject has another open one of its type
    (one open request of a type per subject; the database's unique index answered 500).

    Under intake's subject locks, taken in its order, so a request filed meanwhile is seen.
    """
    keys = sorted(set(request.subject_indexes or [request.subject_index]))
    for key in keys:
        await session.execute(
            sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended("dsr:" + key, 0)))
        )
    other = (
        await session.exec(
            select(DsrRequest.id).where(
                col(DsrRequest.subject_indexes).op("&&")(sa.cast(keys, SUBJECT_INDEXES)),
                col(DsrRequest.type) == request.type,
                col(DsrRequest.status).in_(OPEN_STATUSES),
                col(DsrRequest.id) != request.id,
            )
        )
    ).first()
    if other is not None:
        raise DuplicateRequest(
            f"The subject has an open {request.type} request: {other}. Upholding reopens this "
            "one; decide once that request is closed, or handle the objection in it.",
            open_request_id=str(other),
        )


async def _reopen(
    session: AsyncSession,
    *,
    crypto: Crypto,
    request: DsrRequest,
    objection: DsrObjection,
    actor: Actor,
    now: datetime,
) -> None:
    previous = {"decision": request.decision, "refusals": request.refusals}
    await transition(
        session,
        crypto=crypto,
        request=request,
        action="reopen",
        actor=actor,
        now=now,
        details={"objection_id": str(objection.id), "previous": previous},
    )
    request.round += 1
    request.decision = None
    request.decided_at = None
    request.decided_by = None
    request.refusals = []
    request.decision_note_encrypted = None
    request.objectable_since = None
    request.completed_at = None
    request.fulfilment_state = None
    request.due_at = objection.due_at
    session.add(request)


async def list_objections(
    session: AsyncSession,
    *,
    now: datetime,
    status: str | None,
    overdue: bool | None,
    limit: int,
    actor: Actor,
) -> list[DsrObjection]:
    """The objection queue, earliest due first (the read is audited)."""
    query = select(DsrObjection).order_by(col(DsrObjection.due_at), col(DsrObjection.id))
    if status is not None:
        query = query.where(col(DsrObjection.status) == status)
    if overdue is True:
        query = query.where(col(DsrObjection.status) == "open", col(DsrObjection.due_at) < now)
    elif overdue is False:
        query = query.where(
            (col(DsrObjection.status) != "open") | (col(DsrObjection.due_at) >= now)
        )
    rows = list((await session.exec(query.limit(limit))).all())
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="objections.listed",
        target_type="objection",
        client_ip=actor.client_ip,
        details={"status": status, "overdue": overdue, "count": len(rows)},
    )
    return rows
