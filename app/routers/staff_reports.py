"""A privacy officer opens, prints and hands over the report of a support-center request."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.deps import DeciderDep
from app.fulfilment.reports import handover
from app.fulfilment.reports.html import (
    render_access_report_html,
    report_content_security_policy,
)
from app.schemas.common import PROBLEM_RESPONSES
from app.schemas.reports import AccessReport, ReportHandoverIn, ReportHandoverOut

router = APIRouter(prefix="/v1/staff", tags=["staff"], responses=PROBLEM_RESPONSES)


@router.get(
    "/requests/{request_id}/report",
    response_model=AccessReport,
    summary="The access report of a representative's or support-center request (audited)",
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
        410: {"description": "The report has expired and was destroyed"},
    },
)
async def get_report(
    request_id: uuid.UUID,
    request: Request,
    ctx: DeciderDep,
    lang: Annotated[
        Literal["ko", "en"] | None,
        Query(description="language of the printable page (default: the request's, Korean)"),
    ] = None,
) -> Any:
    report, locale = await handover.open_staff_report(
        ctx.session, crypto=ctx.crypto, now=ctx.now, request_id=request_id, actor=ctx.actor
    )
    if "text/html" in request.headers.get("accept", ""):
        page = render_access_report_html(report, lang=lang or locale, settings=ctx.settings)
        # The page's own policy (its inline stylesheet by hash), so that it prints as designed.
        return HTMLResponse(
            page,
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": report_content_security_policy(page),
            },
        )
    return report


@router.post(
    "/requests/{request_id}/report-handover",
    response_model=ReportHandoverOut,
    summary="Record how the report was handed over (counter, post, e-mail)",
)
async def record_handover(
    request_id: uuid.UUID, body: ReportHandoverIn, ctx: DeciderDep
) -> ReportHandoverOut:
    await handover.record_report_handover(
        ctx.session,
        crypto=ctx.crypto,
        now=ctx.now,
        request_id=request_id,
        actor=ctx.actor,
        method=body.method,
        note=body.note,
    )
    return ReportHandoverOut(request_id=request_id, method=body.method, handed_over_at=ctx.now)
