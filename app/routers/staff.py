"""The support center: queue, details, intake, decisions, objections, and the audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.audit import query
from app.deps import DeciderDep, OfficerDep, StaffContext, StaffDep
from app.models import DsrObjection, DsrRequest
from app.requests import completion, decisions, intake, objections, postponement, queries, queue
from app.requests.deadlines import assume_zone
from app.routers.requests import IdempotencyKey
from app.schemas.common import PROBLEM_RESPONSES
from app.schemas.requests import RequestStatus, RequestSummary, RequestType
from app.schemas.staff import (
    ApproveIn,
    AuditEntryOut,
    AuditPage,
    ExtendIn,
    ObjectionDecisionIn,
    ProposeRefusalIn,
    QueueCounts,
    QueuePage,
    QueueRow,
    RefuseIn,
    ResumeIn,
    StaffObjectionList,
    StaffObjectionOut,
    StaffRequestCreate,
    StaffRequestDetail,
)
from app.schemas.types import Instant

router = APIRouter(prefix="/v1/staff", tags=["staff"], responses=PROBLEM_RESPONSES)
audit_router = APIRouter(prefix="/v1", tags=["audit"], responses=PROBLEM_RESPONSES)


def queue_row(request: DsrRequest, ctx: StaffContext) -> QueueRow:
    return QueueRow.model_validate(
        queue.queue_row(request, now=ctx.now, tz=ctx.settings.display_timezone)
    )


def objection_out(row: DsrObjection, now: datetime) -> StaffObjectionOut:
    return StaffObjectionOut(
        id=row.id,
        request_id=row.request_id,
        status=row.status,
        submitted_at=row.submitted_at,
        due_at=row.due_at,
        overdue=row.status == "open" and now > row.due_at,
        decided_at=row.decided_at,
    )


@router.get("/requests", response_model=QueuePage, summary="The request queue, earliest due first")
async def list_requests(
    ctx: StaffDep,
    status: Annotated[list[RequestStatus] | None, Query()] = None,
    type: Annotated[list[RequestType] | None, Query()] = None,
    overdue: bool | None = None,
    due_before: Instant | None = None,
    received_from: Instant | None = None,
    received_to: Instant | None = None,
    fulfilment: Literal["queued", "failed", "done"] | None = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    phone: Annotated[str | None, Query(max_length=40, description="the caller's number")] = None,
    email: Annotated[str | None, Query(max_length=254, description="the caller's address")] = None,
    reference: Annotated[str | None, Query(max_length=12, description="e.g. 3F2A9C1B")] = None,
    assignee: Annotated[
        str | None, Query(max_length=128, description="a staff user id, `me` or `none`")
    ] = None,
    due_within: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,2}d$", description="open and due within N days: 2d")
    ] = None,
    sort: Literal["due_at", "-due_at"] = "due_at",
) -> QueuePage:
    tz = ctx.settings.display_timezone
    search = queue.Search(phone=phone, email=email, reference=reference)
    filters = queue.RequestFilters(
        statuses=list(status) if status else None,
        types=list(type) if type else None,
        overdue=overdue,
        due_before=assume_zone(due_before, tz),
        received_from=assume_zone(received_from, tz),
        received_to=assume_zone(received_to, tz),
        fulfilment=fulfilment,
        search=search if search.kinds() else None,
        assignee=ctx.principal.subject if assignee == "me" else assignee,
        due_within_days=int(due_within[:-1]) if due_within else None,
        descending=sort == "-due_at",
    )
    page = await queue.list_staff_requests(
        ctx.session,
        now=ctx.now,
        filters=filters,
        cursor=cursor,
        limit=limit,
        actor=ctx.actor,
        crypto=ctx.crypto,
        tz=tz,
    )
    return QueuePage(
        items=[queue_row(request, ctx) for request in page.requests],
        next_cursor=page.next_cursor,
        counts=QueueCounts.model_validate(page.counts),
    )


@router.post(
    "/requests",
    status_code=201,
    response_model=RequestSummary,
    summary="Intake by phone or at the counter (agent-verified, or a representative with proof)",
)
async def intake_request(
    body: StaffRequestCreate,
    ctx: StaffDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RequestSummary:
    submitted = await intake.submit_staff_request(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        body=body.request,
        identifiers=body.identifiers.model_dump(exclude_none=True),
        notify_via=body.notify.model_dump(exclude_none=True) if body.notify else None,
        intake_channel=body.intake_channel,
        verification=body.verification.model_dump(exclude_none=True),
        actor=ctx.actor,
        idempotency_key=idempotency_key,
    )
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return RequestSummary.model_validate(submitted.answer)


@router.get(
    # Typed in the path so that /requests/bulk (POST only) is not also a GET of a request "bulk":
    # its 405 then names POST alone, as the contract says.
    "/requests/{request_id:uuid}",
    response_model=StaffRequestDetail,
    summary="A request with its body, decision, objections and full history (audited)",
)
async def get_request(request_id: uuid.UUID, ctx: StaffDep) -> StaffRequestDetail:
    view = await queries.view_staff_request(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        request_id=request_id,
        actor=ctx.actor,
    )
    return StaffRequestDetail.model_validate(view)


@router.post("/requests/{request_id}/review", response_model=QueueRow, summary="Start the review")
async def start_review(request_id: uuid.UUID, ctx: StaffDep) -> QueueRow:
    request = await decisions.start_review(
        ctx.session, crypto=ctx.crypto, now=ctx.now, request_id=request_id, actor=ctx.actor
    )
    return queue_row(request, ctx)


@router.post(
    "/requests/{request_id}/propose-refusal",
    response_model=QueueRow,
    summary="Propose a refusal (whole or partial) for a privacy officer to decide",
)
async def propose_refusal(request_id: uuid.UUID, body: ProposeRefusalIn, ctx: StaffDep) -> QueueRow:
    request = await decisions.propose_refusal(
        ctx.session,
        crypto=ctx.crypto,
        now=ctx.now,
        request_id=request_id,
        actor=ctx.actor,
        ground=body.ground,
        refused_items=[item.model_dump() for item in body.refused_items or []] or None,
        explanation=body.explanation,
    )
    return queue_row(request, ctx)


@router.post(
    "/requests/{request_id}/approve",
    response_model=QueueRow,
    summary="Approve (all, or in part with refused_items: privacy officer) and start fulfilment",
)
async def approve_request(
    request_id: uuid.UUID, ctx: StaffDep, body: ApproveIn | None = None
) -> QueueRow:
    body = body or ApproveIn()  # no body: approve all
    request = await decisions.approve_request(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        request_id=request_id,
        actor=ctx.actor,
        refused_items=[item.model_dump() for item in body.refused_items or []] or None,
        explanation=body.explanation,
    )
    return queue_row(request, ctx)


@router.post(
    "/requests/{request_id}/refuse",
    response_model=QueueRow,
    summary="Refuse on a legal ground (privacy officer; not their own proposal)",
)
async def refuse_request(request_id: uuid.UUID, body: RefuseIn, ctx: DeciderDep) -> QueueRow:
    request = await decisions.refuse_request(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        request_id=request_id,
        actor=ctx.actor,
        ground=body.ground,
        explanation=body.explanation,
    )
    return queue_row(request, ctx)


@router.post(
    "/requests/{request_id}/extend",
    response_model=QueueRow,
    summary="Postpone the due date with a reason (privacy officer); the subject is told",
)
async def extend_request(request_id: uuid.UUID, body: ExtendIn, ctx: DeciderDep) -> QueueRow:
    request = await postponement.extend_request(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        request_id=request_id,
        actor=ctx.actor,
        reason=body.reason,
        new_due_at=body.new_due_at,
    )
    return queue_row(request, ctx)


@router.post(
    "/requests/{request_id}/resume",
    response_model=QueueRow,
    summary="The reason for postponing access has ended: give access now (privacy officer)",
)
async def resume_request(
    request_id: uuid.UUID, ctx: DeciderDep, body: ResumeIn | None = None
) -> QueueRow:
    body = body or ResumeIn()
    request = await postponement.resume_request(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        request_id=request_id,
        actor=ctx.actor,
        note=body.note,
    )
    return queue_row(request, ctx)


@router.post(
    "/requests/{request_id}/withdraw",
    response_model=QueueRow,
    summary="Withdraw on the subject's behalf (they asked by phone or at the counter)",
)
async def withdraw_request(request_id: uuid.UUID, ctx: StaffDep) -> QueueRow:
    request = await decisions.withdraw_request(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        request_id=request_id,
        actor=ctx.actor,
    )
    return queue_row(request, ctx)


@router.post(
    "/requests/{request_id}/retry-fulfilment",
    response_model=QueueRow,
    summary="Queue a failed fulfilment again (privacy officer or admin)",
)
async def retry_fulfilment(request_id: uuid.UUID, ctx: OfficerDep) -> QueueRow:
    request = await completion.retry_fulfilment(
        ctx.session, crypto=ctx.crypto, now=ctx.now, request_id=request_id, actor=ctx.actor
    )
    return queue_row(request, ctx)


@router.get(
    "/objections", response_model=StaffObjectionList, summary="Objections, earliest due first"
)
async def list_objections(
    ctx: StaffDep,
    status: Literal["open", "upheld", "dismissed"] | None = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> StaffObjectionList:
    rows = await objections.list_objections(
        ctx.session, now=ctx.now, status=status, overdue=overdue, limit=limit, actor=ctx.actor
    )
    return StaffObjectionList(items=[objection_out(row, ctx.now) for row in rows])


@router.post(
    "/objections/{objection_id}/decide",
    response_model=StaffObjectionOut,
    summary="Uphold (reopens the request) or dismiss an objection (privacy officer)",
)
async def decide_objection(
    objection_id: uuid.UUID, body: ObjectionDecisionIn, ctx: DeciderDep
) -> StaffObjectionOut:
    row = await objections.decide_objection(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        objection_id=objection_id,
        outcome=body.outcome,
        explanation=body.explanation,
        actor=ctx.actor,
    )
    return objection_out(row, ctx.now)


@audit_router.get(
    "/audit",
    response_model=AuditPage,
    summary="The audit trail, newest first (privacy officer or admin)",
)
async def read_audit(
    ctx: OfficerDep,
    actor: Annotated[
        str | None,
        Query(
            max_length=128,
            description="e.g. staff:<sub>; also finds older processor entries under the bare sub",
        ),
    ] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target_type: Annotated[str | None, Query(max_length=32)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    at_from: Instant | None = None,
    at_to: Instant | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    tz = ctx.settings.display_timezone
    page = await query.list_audit(
        ctx.session,
        now=ctx.now,
        filters=query.AuditFilters(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            at_from=assume_zone(at_from, tz),
            at_to=assume_zone(at_to, tz),
        ),
        cursor=cursor,
        limit=limit,
        actor=ctx.actor,
        crypto=ctx.crypto,
    )
    return AuditPage(
        items=[AuditEntryOut.model_validate(entry, from_attributes=True) for entry in page.entries],
        next_cursor=page.next_cursor,
    )
