"""Data subjects (the app): submit and follow their own requests, withdraw, object."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import HTMLResponse

from app.audit.actors import Actor
from app.deps import (
    CallDep,
    ClientIpDep,
    ClockDep,
    CryptoDep,
    CurrentSubject,
    SessionDep,
    SettingsDep,
)
from app.fulfilment import handoff
from app.fulfilment.reports.html import (
    render_access_report_html,
    report_content_security_policy,
)
from app.requests import decisions, intake, objections, queries, views
from app.schemas.common import PROBLEM_RESPONSES
from app.schemas.reports import AccessReport
from app.schemas.requests import (
    ObjectionCreate,
    ObjectionOut,
    RefusalGroundList,
    RefusalGroundOut,
    RequestCreate,
    RequestDetail,
    RequestList,
    RequestSummary,
)
from app.vocabulary import GROUNDS

router = APIRouter(prefix="/v1", tags=["requests"], responses=PROBLEM_RESPONSES)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="retry safely: the same key and body get the first answer again",
    ),
]


@router.post(
    "/requests",
    status_code=201,
    response_model=RequestSummary,
    summary="Submit a request (access, correction, deletion, suspension, consent withdrawal)",
)
async def submit_request(
    body: RequestCreate,
    principal: CurrentSubject,
    call: CallDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RequestSummary:
    # The busiest endpoint (docs/BENCHMARKS.md): one statement on an autocommit connection,
    # committed when it returns, before this answer is sent.
    async with call.database.autocommit() as connection:
        submitted = await intake.submit_subject_request(
            connection,
            crypto=call.crypto,
            settings=call.settings,
            now=call.now,
            subject_index=principal.subject,
            also_indexes=principal.indexes[1:],
            body=body,
            actor=Actor.of(principal, call.client_ip),
            idempotency_key=idempotency_key,
        )
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return RequestSummary.model_validate(submitted.answer)


@router.get("/requests", response_model=RequestList, summary="My requests, newest first")
async def list_my_requests(
    principal: CurrentSubject, session: SessionDep, clock: ClockDep, settings: SettingsDep
) -> RequestList:
    items = await queries.list_subject_requests(
        session,
        settings=settings,
        now=clock.now(),
        subject_index=principal.subject,
        subject_indexes=principal.indexes,
    )
    return RequestList.model_validate({"items": items})


@router.get("/requests/{request_id}", response_model=RequestDetail, summary="One of my requests")
async def get_my_request(
    request_id: uuid.UUID,
    principal: CurrentSubject,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    settings: SettingsDep,
) -> RequestDetail:
    view = await queries.get_subject_request(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        request_id=request_id,
        subject_index=principal.subject,
        subject_indexes=principal.indexes,
    )
    return RequestDetail.model_validate(view)


@router.post(
    "/requests/{request_id}/withdraw",
    response_model=RequestSummary,
    summary="Withdraw my request (before it is decided)",
)
async def withdraw_my_request(
    request_id: uuid.UUID,
    principal: CurrentSubject,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
) -> RequestSummary:
    request = await decisions.withdraw_request(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        request_id=request_id,
        actor=Actor.of(principal, client_ip),
        subject_index=principal.subject,
        subject_indexes=principal.indexes,
    )
    return RequestSummary.model_validate(
        views.summary(request, now=clock.now(), tz=settings.display_timezone)
    )


@router.post(
    "/requests/{request_id}/objection",
    status_code=201,
    response_model=ObjectionOut,
    summary="Object to a refusal (PIPA Art. 38(5)) within the objection period",
)
async def object_to_decision(
    request_id: uuid.UUID,
    body: ObjectionCreate,
    principal: CurrentSubject,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
) -> ObjectionOut:
    objection = await objections.submit_objection(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        request_id=request_id,
        subject_index=principal.subject,
        subject_indexes=principal.indexes,
        reason=body.reason,
        actor=Actor.of(principal, client_ip),
    )
    return ObjectionOut.model_validate(
        views.objection(
            objection, reason=body.reason, explanation=None, tz=settings.display_timezone
        )
    )


@router.get(
    "/refusal-grounds",
    response_model=RefusalGroundList,
    tags=["reference"],
    summary="The legal grounds a request can be refused on (public)",
)
async def refusal_grounds() -> RefusalGroundList:
    return RefusalGroundList(
        items=[
            RefusalGroundOut(
                code=ground.code,
                applies_to=list(ground.applies_to),
                label_ko=ground.ko,
                label_en=ground.en,
                legal_source_ko=ground.source_ko,
                legal_source_en=ground.source_en,
            )
            for ground in GROUNDS.values()
        ]
    )


@router.get(
    "/requests/{request_id}/report",
    response_model=AccessReport,
    summary="The access report (PIPA Art. 35): JSON, or a readable page with Accept: text/html",
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
        409: {
            **PROBLEM_RESPONSES[409],
            "description": "Still being prepared (`report-not-ready`, the request's "
            "`current_status`): ask again after `Retry-After` seconds",
        },
        410: {"description": "The report has expired and was destroyed"},
    },
)
async def get_my_report(
    request_id: uuid.UUID,
    request: Request,
    principal: CurrentSubject,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
    settings: SettingsDep,
    lang: Annotated[
        Literal["ko", "en"] | None,
        Query(description="language of the readable page (default: the request's, Korean)"),
    ] = None,
) -> Any:
    report, locale = await handoff.download_access_report(
        session,
        crypto=crypto,
        now=clock.now(),
        request_id=request_id,
        subject_index=principal.subject,
        subject_indexes=principal.indexes,
        client_ip=client_ip,
    )
    if "text/html" in request.headers.get("accept", ""):
        page = render_access_report_html(report, lang=lang or locale, settings=settings)
        return HTMLResponse(
            page,
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": report_content_security_policy(page),
            },
        )
    return report
