"""The support console's API: own a request, notes, the SLA clock, bulk actions, export, figures.

The queue search (phone, e-mail, reference, owner, due within) is on ``GET /v1/staff/requests``.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app.deps import DatabaseDep, OfficerDep, StaffDep
from app.requests import assignment, exports, notes, sla, statistics
from app.routers.staff import queue_row
from app.schemas.common import PROBLEM_RESPONSES
from app.schemas.notes import NoteIn, NoteList, NoteOut
from app.schemas.staff import QueueRow
from app.schemas.support import AssignIn, BulkIn, BulkOut, SlaOut, StatisticsOut
from app.schemas.types import Day

router = APIRouter(prefix="/v1/staff", tags=["support console"], responses=PROBLEM_RESPONSES)

From = Annotated[Day, Query(alias="from", description="first day received (Asia/Seoul)")]
To = Annotated[Day, Query(alias="to", description="last day received, inclusive")]


@router.post("/requests/{request_id}/take", response_model=QueueRow, summary="Take the request")
async def take_request(request_id: uuid.UUID, ctx: StaffDep) -> QueueRow:
    request = await assignment.take_request(
        ctx.session, crypto=ctx.crypto, now=ctx.now, request_id=request_id, actor=ctx.actor
    )
    return queue_row(request, ctx)


@router.post(
    "/requests/{request_id}/assign",
    response_model=QueueRow,
    summary="Give the request to a staff member (privacy officer or admin)",
)
async def assign_request(request_id: uuid.UUID, body: AssignIn, ctx: OfficerDep) -> QueueRow:
    request = await assignment.assign_request(
        ctx.session,
        crypto=ctx.crypto,
        now=ctx.now,
        request_id=request_id,
        assignee=body.assignee,
        actor=ctx.actor,
    )
    return queue_row(request, ctx)


@router.post(
    "/requests/{request_id}/unassign",
    response_model=QueueRow,
    summary="Give the request back to the queue (its owner, or an officer)",
)
async def unassign_request(request_id: uuid.UUID, ctx: StaffDep) -> QueueRow:
    request = await assignment.unassign_request(
        ctx.session, crypto=ctx.crypto, now=ctx.now, request_id=request_id, actor=ctx.actor
    )
    return queue_row(request, ctx)


@router.get(
    "/requests/{request_id}/notes",
    response_model=NoteList,
    summary="Internal notes, oldest first (audited)",
)
async def list_notes(request_id: uuid.UUID, ctx: StaffDep) -> NoteList:
    items = await notes.list_notes(
        ctx.session, crypto=ctx.crypto, now=ctx.now, request_id=request_id, actor=ctx.actor
    )
    return NoteList.model_validate({"items": items})


@router.post(
    "/requests/{request_id}/notes",
    status_code=201,
    response_model=NoteOut,
    summary="Add an internal note (encrypted; never shown to the subject)",
)
async def add_note(request_id: uuid.UUID, body: NoteIn, ctx: StaffDep) -> NoteOut:
    note = await notes.add_note(
        ctx.session,
        crypto=ctx.crypto,
        now=ctx.now,
        request_id=request_id,
        text=body.text,
        actor=ctx.actor,
    )
    return NoteOut.model_validate(note)


@router.post(
    "/requests/bulk",
    response_model=BulkOut,
    summary="Take, assign (officer) or withdraw as spam (officer) a selection, each audited",
)
async def bulk(body: BulkIn, ctx: StaffDep) -> BulkOut:
    results = await assignment.bulk_action(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        action=body.action,
        request_ids=body.ids,
        assignee=body.assignee,
        actor=ctx.actor,
    )
    return BulkOut.model_validate({"items": [asdict(result) for result in results]})


@router.get(
    "/sla",
    response_model=SlaOut,
    summary="Overdue, due today, due soon, postponed, waiting on a processor (audited)",
)
async def sla_overview(
    ctx: StaffDep,
    within_days: Annotated[int, Query(ge=0, le=10)] = 2,
    mine: bool = False,
) -> SlaOut:
    overview = await sla.sla_overview(
        ctx.session,
        settings=ctx.settings,
        now=ctx.now,
        within_days=within_days,
        assignee=ctx.principal.subject if mine else None,
        actor=ctx.actor,
    )
    return SlaOut.model_validate(overview)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "one line per request"}},
    summary="CSV of requests received in a range (identifiers: privacy officer only; audited)",
)
async def export_requests(
    ctx: OfficerDep,
    database: DatabaseDep,
    day_from: From,
    day_to: To,
    personal: bool = False,
) -> StreamingResponse:
    stream = await exports.export_requests(
        ctx.session,
        database=database,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        day_from=day_from,
        day_to=day_to,
        personal=personal,
        actor=ctx.actor,
    )
    name = f"dsr-requests-{day_from.isoformat()}-{day_to.isoformat()}.csv"
    return StreamingResponse(
        stream,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/statistics",
    response_model=StatisticsOut,
    summary="Counts, days to complete, share on time, objections (privacy officer or admin)",
)
async def request_statistics(ctx: OfficerDep, day_from: From, day_to: To) -> StatisticsOut:
    figures = await statistics.request_statistics(
        ctx.session,
        settings=ctx.settings,
        now=ctx.now,
        day_from=day_from,
        day_to=day_to,
        actor=ctx.actor,
    )
    return StatisticsOut.model_validate(figures)
