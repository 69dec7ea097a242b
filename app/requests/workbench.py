"""What the console shows of one request: the staff view, what it holds in force, and for a
privacy officer or admin the request's audit trail. Each read is audited by the parts it uses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import query
from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import IllegalTransition
from app.models import DsrRequest
from app.requests import decisions, queries
from app.requests.bodies import refusable_parts
from app.requests.lifecycle import lock_request, unseal
from app.retention import restrictions
from app.vocabulary import GROUNDS, item_label

OFFICER_ROLES = frozenset({"privacy_officer", "admin"})


def grounds_for(request_type: str, locale: str) -> list[dict[str, str]]:
    """The legal grounds a refusal of this type of request may rest on, labelled."""
    return [
        {"code": ground.code, "label": ground.label(locale), "source": ground.source(locale)}
        for ground in GROUNDS.values()
        if request_type in ground.applies_to
    ]


async def request_workbench(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
    locale: str,
) -> dict[str, Any]:
    """The staff view of a request with its holds, its grounds, and (officers) its audit trail."""
    view = await queries.view_staff_request(
        session, crypto=crypto, settings=settings, now=now, request_id=request_id, actor=actor
    )
    request = await session.get(DsrRequest, request_id)
    assert request is not None  # view_staff_request answered NotFound otherwise
    keys = request.subject_indexes
    held = [
        {"kind": "restriction", "what": row.item, "since": row.created_at.isoformat()}
        for row in await restrictions.active_restrictions(session, subject_keys=keys)
        if row.request_id == request.id
    ] + [
        {"kind": "suspension", "what": row.purpose, "since": row.since.isoformat()}
        for row in await restrictions.active_suspensions(session, subject_keys=keys)
        if row.request_id == request.id
    ]
    trail: list[dict[str, Any]] = []
    if actor.roles & OFFICER_ROLES:
        page = await query.list_audit(
            session,
            now=now,
            filters=query.AuditFilters(target_type="request", target_id=str(request.id)),
            cursor=None,
            limit=100,
            actor=actor,
        )
        trail = [
            {
                "at": entry.at.isoformat(),
                "actor": entry.actor,
                "role": entry.role,
                "action": entry.action,
            }
            for entry in page.entries
        ]
    return {
        **view,
        "holds": held,
        "grounds": grounds_for(request.type, locale),
        "parts": refusable(request.type, request.scope, locale),
        # Readable names for every code the page shows (scope, proposal, grounds).
        "labels": {
            **{
                code: item_label(code, locale)
                for values in request.scope.values()
                for code in values
            },
            **{
                entry["item"]: item_label(entry["item"], locale)
                for entry in (request.proposal or {}).get("refused_items", [])
            },
            **{ground.code: ground.label(locale) for ground in GROUNDS.values()},
        },
        "audit": trail,
    }


def refusable(request_type: str, scope: dict[str, list[str]], locale: str) -> list[dict[str, str]]:
    """The parts a partial refusal may name, labelled (access: every item and category)."""
    return [
        {"value": code, "label": item_label(code, locale)}
        for code in sorted(refusable_parts(request_type, scope))
    ]


async def decide_as_proposed(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
) -> DsrRequest:
    """A privacy officer accepts the pending proposal: a whole refusal is refused on its ground,
    a partial one approved with its refused items and explanation (four-eyes as always)."""
    request = await lock_request(session, request_id)
    proposal = request.proposal
    if not proposal:
        raise IllegalTransition(
            "No refusal is proposed for this request.",
            current_status=request.status,
            action="decide_proposal",
        )
    explanation = unseal(crypto, request.id, "proposal", request.proposal_note_encrypted)
    if proposal.get("ground"):
        return await decisions.refuse_request(
            session,
            crypto=crypto,
            settings=settings,
            now=now,
            request_id=request_id,
            actor=actor,
            ground=proposal["ground"],
            explanation=explanation or "",
        )
    return await decisions.approve_request(
        session,
        crypto=crypto,
        settings=settings,
        now=now,
        request_id=request_id,
        actor=actor,
        refused_items=list(proposal.get("refused_items") or []),
        explanation=explanation,
    )
