"""Who owns a request: an agent takes it, a privacy officer assigns anyone; bulk actions.

The owner is the staff member's user id at the identity provider (the token's ``sub``). Every
change is a history event and an audit entry on the request, in the caller's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import Conflict, DomainError, Forbidden, IllegalTransition, InvalidInput
from app.models import DsrRequest
from app.models.requests import OPEN_STATUSES
from app.requests import decisions
from app.requests.lifecycle import lock_request, record

BulkAction = Literal["take", "assign", "withdraw_spam"]
BULK_MAX = 100


def staff_user(actor: Actor) -> str:
    """The user id an actor's ``staff:<sub>`` id stands for."""
    return actor.id.removeprefix("staff:")


def _can_assign_others(actor: Actor) -> bool:
    return bool(actor.roles & {"privacy_officer", "admin"})


def _check_open(request: DsrRequest, action: str) -> None:
    if request.status not in OPEN_STATUSES:
        raise IllegalTransition(
            f"A request that is {request.status} has no owner to change.",
            current_status=request.status,
            action=action,
        )


async def _set_owner(
    session: AsyncSession,
    *,
    crypto: Crypto,
    request: DsrRequest,
    assignee: str | None,
    actor: Actor,
    now: datetime,
    action: str,
) -> DsrRequest:
    _check_open(request, action)
    previous = request.assignee
    request.assignee = assignee
    request.assigned_at = now if assignee else None
    request.updated_at = now
    session.add(request)
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action=action,
        now=now,
        details={"from_assignee": previous, "to_assignee": assignee},
    )
    return request


async def take_request(
    session: AsyncSession, *, crypto: Crypto, now: datetime, request_id: uuid.UUID, actor: Actor
) -> DsrRequest:
    """The caller takes the request; another's request only if the caller may assign others."""
    request = await lock_request(session, request_id)
    me = staff_user(actor)
    _check_open(request, "take")
    if request.assignee == me:
        return request
    if request.assignee is not None and not _can_assign_others(actor):
        raise Conflict("Another staff member owns this request; ask a privacy officer.")
    return await _set_owner(
        session, crypto=crypto, request=request, assignee=me, actor=actor, now=now, action="taken"
    )


async def assign_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    assignee: str,
    actor: Actor,
) -> DsrRequest:
    """A privacy officer (or admin) gives the request to any staff member."""
    if not _can_assign_others(actor):
        raise Forbidden("Only a privacy officer or an admin assigns requests to others.")
    request = await lock_request(session, request_id)
    if request.assignee == assignee:
        return request
    return await _set_owner(
        session,
        crypto=crypto,
        request=request,
        assignee=assignee,
        actor=actor,
        now=now,
        action="assigned",
    )


async def unassign_request(
    session: AsyncSession, *, crypto: Crypto, now: datetime, request_id: uuid.UUID, actor: Actor
) -> DsrRequest:
    """Give the request back to the queue: its owner, or an officer for anyone's."""
    request = await lock_request(session, request_id)
    if request.assignee is None:
        return request
    if request.assignee != staff_user(actor) and not _can_assign_others(actor):
        raise Forbidden("Only the owner or a privacy officer gives a request back.")
    return await _set_owner(
        session,
        crypto=crypto,
        request=request,
        assignee=None,
        actor=actor,
        now=now,
        action="unassigned",
    )


@dataclass(frozen=True)
class BulkResult:
    id: uuid.UUID
    ok: bool
    code: str | None = None
    status: str | None = None
    assignee: str | None = None


async def _withdraw_spam(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
) -> DsrRequest:
    request = await decisions.withdraw_request(
        session, crypto=crypto, settings=settings, now=now, request_id=request_id, actor=actor
    )
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action="marked_spam",
        now=now,
        details={"reason": "spam"},
    )
    return request


async def bulk_action(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    action: BulkAction,
    request_ids: list[uuid.UUID],
    assignee: str | None,
    actor: Actor,
) -> list[BulkResult]:
    """Apply one action to each request on its own savepoint: one failure spoils no other."""
    if not request_ids or len(request_ids) > BULK_MAX:
        raise InvalidInput(f"Select between 1 and {BULK_MAX} requests.")
    if action == "assign" and not assignee:
        raise InvalidInput("Name the staff member to assign the requests to.")
    if action in ("assign", "withdraw_spam") and not _can_assign_others(actor):
        raise Forbidden("Only a privacy officer or an admin does this to a selection.")
    results: list[BulkResult] = []
    for request_id in dict.fromkeys(request_ids):
        try:
            async with session.begin_nested():
                if action == "take":
                    request = await take_request(
                        session, crypto=crypto, now=now, request_id=request_id, actor=actor
                    )
                elif action == "assign":
                    request = await assign_request(
                        session,
                        crypto=crypto,
                        now=now,
                        request_id=request_id,
                        assignee=assignee or "",
                        actor=actor,
                    )
                else:
                    request = await _withdraw_spam(
                        session,
                        crypto=crypto,
                        settings=settings,
                        now=now,
                        request_id=request_id,
                        actor=actor,
                    )
        except DomainError as exc:
            results.append(BulkResult(id=request_id, ok=False, code=exc.code))
            continue
        results.append(
            BulkResult(id=request_id, ok=True, status=request.status, assignee=request.assignee)
        )
    return results
