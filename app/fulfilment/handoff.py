"""Glue between the request lifecycle and the fulfilment jobs that act on the data map.

A fulfilment job's payload carries only the request id: the job reads the request, reveals the
subject's verified identifiers from their encrypted rows (``subjects.identifiers_of``), and
reports back to the lifecycle (``fulfilment.common.complete``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.errors import NotFound
from app.fulfilment import common
from app.fulfilment.access import AccessReportReady
from app.fulfilment.reports.store import load_access_report
from app.requests import queries
from app.schemas.reports import AccessReport
from app.vocabulary import WITHHOLDING_TO_REFUSAL_GROUND


def access_report_ready(*, crypto: Crypto, settings: Settings) -> AccessReportReady:
    """``WorkerContext.access_report_ready``: complete the request when its report is stored."""

    async def complete(
        session: AsyncSession, *, request_id: uuid.UUID, report: AccessReport, now: datetime
    ) -> None:
        refused: dict[str, dict[str, Any]] = {}
        for withheld in report.withheld:
            ground = WITHHOLDING_TO_REFUSAL_GROUND.get(withheld.ground, "pipa_35_4_1")
            refused.setdefault(withheld.item, {"item": withheld.item, "ground": ground})
        await common.complete(
            session,
            crypto=crypto,
            settings=settings,
            now=now,
            request_id=request_id,
            result={
                "report": {
                    "items": len(report.items),
                    "third_parties": len(report.third_parties),
                    "withheld": len(report.withheld),
                    "expires_at": report.expires_at.isoformat() if report.expires_at else None,
                }
            },
            refused_items=list(refused.values()),
        )

    return complete


async def download_access_report(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    subject_index: str,
    client_ip: str | None,
) -> tuple[AccessReport, str]:
    """The subject's own access report and the request's locale; every download is audited."""
    request = await queries.find_subject_request(
        session, request_id=request_id, subject_index=subject_index
    )
    if request.type != "access":
        raise NotFound("No such access request.")
    report = await load_access_report(
        session, crypto=crypto, request_id=request.id, subject=None, now=now
    )
    actor = Actor.subject(subject_index, client_ip)
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="report.downloaded",
        target_type="request",
        target_id=str(request.id),
        client_ip=client_ip,
    )
    return report, request.locale
