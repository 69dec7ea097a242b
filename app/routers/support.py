"""The support console's API: own a request, notes, the SLA clock, bulk actions, export, figures.

The queue search (phone, e-mail, reference, owner, due within) is on ``GET /v1/staff/requests``.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app.audit.actors import Actor
from app.deps import (
    ClientIpDep,
    ClockDep,
    CryptoDep,
    DatabaseDep,
    OfficerPrincipal,
    SessionDep,
    SettingsDep,
    StaffPrincipal,
)
from app.requests import assignment, exports, notes, queries, sla, statistics
from app.schemas.common import PROBLEM_RESPONSES
from app.schemas.notes import NoteIn, NoteList, NoteOut
from app.schemas.staff import QueueRow
from app.schemas.support import AssignIn, BulkIn, BulkOut, SlaOut, StatisticsOut
from app.security import Principal

router = APIRouter(prefix="/v1/staff", tags=["support console"], responses=PROBLEM_RESPONSES)

From = Annotated[date, Query(alias="from", description="first day received (Asia/Seoul)")]
To = Annotated[date, Query(description="last day received, inclusive")]


def _actor(principal: Principal, client_ip: str) -> Actor:
    return Actor.of(principal, client_ip)


@router.post("/requests/{request_id}/take", response_model=QueueRow, summary="Take the request")
async def take_request(
    request_id: uuid.UUID,
    principal: StaffPrincipal,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
) -> dict[str, Any]:
    request = await assignment.take_request(
        session,
        crypto=crypto,
        now=clock.now(),
        request_id=request_id,
        actor=_actor(principal, client_ip),
    )
    return queries.queue_row(request, now=clock.now(), tz=settings.display_timezone)


@router.post(
    "/requests/{request_id}/assign",
    response_model=QueueRow,
    summary="Give the request to a staff member (privacy officer or admin)",
)
async def assign_request(
    request_id: uuid.UUID,
    body: AssignIn,
    principal: OfficerPrincipal,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
) -> dict[str, Any]:
    request = await assignment.assign_request(
        session,
        crypto=crypto,
        now=clock.now(),
        request_id=request_id,
        assignee=body.assignee,
        actor=_actor(principal, client_ip),
    )
    return queries.queue_row(request, now=clock.now(), tz=settings.display_timezone)


@router.post(
    "/requests/{request_id}/unassign",
    response_model=QueueRow,
    summary="Give the request back to the queue (its owner, or an officer)",
)
async def unassign_request(
    request_id: uuid.UUID,
    principal: StaffPrincipal,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
) -> dict[str, Any]:
    request = await assignment.unassign_request(
        session,
        crypto=crypto,
        now=clock.now(),
        request_id=request_id,
        actor=_actor(principal, client_ip),
    )
    return queries.queue_row(request, now=clock.now(), tz=settings.display_timezone)


@router.get(
    "/requests/{request_id}/notes",
    response_model=NoteList,
    summary="Internal notes, oldest first (audited)",
)
async def list_notes(
    request_id: uuid.UUID,
    principal: StaffPrincipal,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
) -> dict[str, Any]:
    items = await notes.list_notes(
        session,
        crypto=crypto,
        now=clock.now(),
        request_id=request_id,
        actor=_actor(principal, client_ip),
    )
    return {"items": items}


@router.post(
    "/requests/{request_id}/notes",
    status_code=201,
    response_model=NoteOut,
    summary="Add an internal note (encrypted; never shown to the subject)",
)
async def add_note(
    request_id: uuid.UUID,
    body: NoteIn,
    principal: StaffPrincipal,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
) -> dict[str, Any]:
    return await notes.add_note(
        session,
        crypto=crypto,
        now=clock.now(),
        request_id=request_id,
        text=body.text,
        actor=_actor(principal, client_ip),
    )


@router.post(
    "/requests/bulk",
    response_model=BulkOut,
    summary="Take, assign (officer) or withdraw as spam (officer) a selection, each audited",
)
async def bulk(
    body: BulkIn,
    principal: StaffPrincipal,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
) -> dict[str, Any]:
    results = await assignment.bulk_action(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        action=body.action,
        request_ids=body.ids,
        assignee=body.assignee,
        actor=_actor(principal, client_ip),
    )
    return {"items": [asdict(result) for result in results]}


@router.get(
    "/sla",
    response_model=SlaOut,
    summary="Overdue, due today, due soon, postponed, waiting on a processor (audited)",
)
async def sla_overview(
    principal: StaffPrincipal,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
    within_days: Annotated[int, Query(ge=0, le=10)] = 2,
    mine: bool = False,
) -> dict[str, Any]:
    return await sla.sla_overview(
        session,
        settings=settings,
        now=clock.now(),
        within_days=within_days,
        assignee=principal.subject if mine else None,
        actor=_actor(principal, client_ip),
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "one line per request"}},
    summary="CSV of requests received in a range (identifiers: privacy officer only; audited)",
)
async def export_requests(
    principal: OfficerPrincipal,
    session: SessionDep,
    database: DatabaseDep,
    clock: ClockDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
    day_from: From,
    day_to: Annotated[date, Query(alias="to", description="last day received, inclusive")],
    personal: bool = False,
) -> StreamingResponse:
    stream = await exports.export_requests(
        session,
        database=database,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        day_from=day_from,
        day_to=day_to,
        personal=personal,
        actor=_actor(principal, client_ip),
    )
    name = f"dsr-requests-{day_from.isoformat()}-{day_to.isoformat()}.csv"
    return StreamingResponse(
        stream,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/statistics",
    response_model=StatisticsOut,
    summary="Counts, days to complete, share on time, objections (privacy officer or admin)",
)
async def request_statistics(
    principal: OfficerPrincipal,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
    day_from: From,
    day_to: Annotated[date, Query(alias="to", description="last day received, inclusive")],
) -> dict[str, Any]:
    return await statistics.request_statistics(
        session,
        settings=settings,
        now=clock.now(),
        day_from=day_from,
        day_to=day_to,
        actor=_actor(principal, client_ip),
    )
