"""Postponing access (PIPA Art. 35(3)): only access, with a stated reason, within the 10 days;
and resuming it without delay once the reason ends (Decree Art. 42(2))."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import IllegalTransition, InvalidInput, PostponementNotAllowed
from app.models import DsrRequest
from app.models.requests import OPEN_STATUSES
from app.requests import deadlines
from app.requests.decisions import approve_parts
from app.requests.lifecycle import (
    STATUS_WORDS,
    check_explained,
    check_four_eyes,
    lock_request,
    notify,
    record,
    transition,
)


async def extend_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
    reason: str,
    new_due_at: datetime | date,
) -> DsrRequest:
    """Postpone an access request's due date for a stated reason, and tell the subject both."""
    request = await lock_request(session, request_id)
    if request.status not in OPEN_STATUSES:
        raise IllegalTransition(
            f"A request that is {STATUS_WORDS[request.status]} has no deadline to extend.",
            current_status=request.status,
            action="extend",
        )
    if request.type != "access":
        # PIPA Art. 35(3) lets access be postponed; Decree Arts. 43(3), 44(2) give correction,
        # deletion and suspension 10 days with no postponement.
        raise PostponementNotAllowed(
            "Only an access request can be postponed (PIPA Art. 35(3)); correction, deletion, "
            "suspension and consent withdrawal are answered within 10 days, with no "
            "postponement (Decree Arts. 43(3), 44(2))."
        )
    check_explained(reason, "A postponement")
    if now > request.due_at:
        raise PostponementNotAllowed(
            "The due date has passed: a postponement must be notified within the 10 days "
            "(Decree Art. 42(2)). Decide the request now."
        )
    tz = settings.display_timezone
    # A plain date is a day in the display zone; a time names the day it falls on there.
    day = deadlines.local_date(new_due_at, tz) if isinstance(new_due_at, datetime) else new_due_at
    due = deadlines.end_of_local_day(day, tz)
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


async def resume_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
    note: str | None = None,
) -> DsrRequest:
    """The reason for postponing access has ended: give access without delay (Decree 42(2))."""
    request = await lock_request(session, request_id)
    if request.type != "access" or not request.extensions:
        raise PostponementNotAllowed("Only a postponed access request can be resumed.")
    if request.status not in ("received", "in_review"):
        raise IllegalTransition(
            f"A request that is {STATUS_WORDS[request.status]} is no longer waiting on its "
            "postponement.",
            current_status=request.status,
            action="resume",
        )
    # Resuming approves: a refusal proposed meanwhile is decided by another officer first.
    check_four_eyes(request, actor)
    tz = settings.display_timezone
    today_ends = deadlines.end_of_local_day(deadlines.local_date(now, tz), tz)
    previous = request.due_at
    request.due_at = min(request.due_at, today_ends)
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action="postponement_ended",
        now=now,
        details={"from_due_at": previous.isoformat(), "to_due_at": request.due_at.isoformat()},
        note=note,
    )
    if request.status == "received":
        await transition(
            session, crypto=crypto, request=request, action="start_review", actor=actor, now=now
        )
        request.review_started_at = now
    await approve_parts(
        session, crypto=crypto, settings=settings, request=request, actor=actor, now=now
    )
    return request
