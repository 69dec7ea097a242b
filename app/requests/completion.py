"""Fulfilment hand-off and completion of a request."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.actors import SYSTEM, Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import (
    IllegalTransition,
    InvalidInput,
)
from app.models import DsrRequest
from app.requests import holds
from app.requests.lifecycle import (
    Outcome,
    check_ground,
    items_covered,
    lock_request,
    notify,
    queue_fulfilment,
    record,
    seal,
    transition,
)

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
    decided = {e["item"] for e in request.refusals if e.get("item")}
    decided |= items_covered(decided)  # a refused category refuses each of its items
    # An item the decision refused is not refused a second time by the fulfilment.
    more = [
        e for e in _fulfilment_refusals(refused_items, request.type) if e["item"] not in decided
    ]
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
    await holds.release_after_completion(session, request=request, now=now)
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
        extra={
            # Taken by staff (a representative, or by phone): no subject token downloads the
            # report, a privacy officer hands it over (PIPA Art. 38).
            "report_handed_over": request.verification_method != "otp",
            **(notice_extra or {}),
        },
    )
    return request


async def return_to_review(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    ground: str,
    explanation: str,
    reason: str,
) -> DsrRequest:
    """Nothing can be carried out: back to review with a system proposal to refuse.

    A refusal is always decided by a privacy officer (two people: the system proposes, the
    officer decides); ``explanation`` is the text offered for the subject, ``reason`` a code.
    """
    request = await lock_request(session, request_id)
    if request.status != "in_progress":
        return request
    check_ground(ground, request.type)
    request.proposal = {
        "by": SYSTEM.id,
        "role": SYSTEM.role,
        "at": now.isoformat(),
        "ground": ground,
        "refused_items": [],
        "reason": reason,
    }
    request.proposal_note_encrypted = seal(crypto, request.id, "proposal", explanation)
    request.fulfilment_state = None
    request.fulfilment_error = None
    # Holds stay until the officer decides: the refusal (or completion) releases them.
    await transition(
        session,
        crypto=crypto,
        request=request,
        action="return_to_review",
        actor=SYSTEM,
        now=now,
        details={"ground": ground, "reason": reason},
        note=explanation,
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
