"""The report of a request made at the support center, for staff to hand over (PIPA Art. 38).

A representative (or a person who asked by phone or at the counter) has no subject token to
download the report in the app. A privacy officer opens or prints it and records how it was
handed over (counter, post, e-mail); both are audited. A request made in the app is not
opened this way: its subject downloads it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.crypto import Crypto
from app.errors import NotFound, ReportNotForStaff
from app.fulfilment.reports.store import load_access_report
from app.models import DsrRequest
from app.requests.lifecycle import load_request, record
from app.schemas.reports import AccessReport

HandoverMethod = Literal["counter", "post", "email"]


async def _staff_request(session: AsyncSession, request_id: uuid.UUID) -> DsrRequest:
    request = await load_request(session, request_id=request_id)
    if request.type != "access":
        raise NotFound("No such access request.")
    if request.verification_method == "otp":
        # Made in the app or the privacy center by a subject who verified by one-time code.
        raise ReportNotForStaff(
            "This request was made in the app: its subject downloads the report there."
        )
    return request


async def open_staff_report(
    session: AsyncSession, *, crypto: Crypto, now: datetime, request_id: uuid.UUID, actor: Actor
) -> tuple[AccessReport, str]:
    """The report of a support-center request and its locale, for a privacy officer (audited)."""
    request = await _staff_request(session, request_id)
    report = await load_access_report(
        session, crypto=crypto, request_id=request.id, subject=None, now=now
    )
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="report.opened_by_staff",
        target_type="request",
        target_id=str(request.id),
        client_ip=actor.client_ip,
        details={"verification": request.verification_method},
    )
    return report, request.locale


async def record_report_handover(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
    method: HandoverMethod,
    note: str | None = None,
) -> DsrRequest:
    """Record that the report was handed to the requester, and how (history and audit)."""
    request = await _staff_request(session, request_id)
    # The report must exist and be current: a handover of nothing is not recorded.
    await load_access_report(session, crypto=crypto, request_id=request.id, subject=None, now=now)
    await record(
        session,
        crypto=crypto,
        request=request,
        actor=actor,
        action="report_handed_over",
        now=now,
        details={"method": method},
        note=note,
    )
    return request
