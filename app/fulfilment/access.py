"""Fulfil an approved access request in the worker: generate, store, then tell the lifecycle.

The request lifecycle enqueues a ``job`` / ``fulfil.access`` message with
``enqueue_access_fulfilment`` in the transaction that approves the request. The worker runs
``handle_fulfil_access``: it reads every source; if any is down it answers ``Retry`` and stores
nothing (never a partial report); otherwise it stores the sealed report and calls
``WorkerContext.access_report_ready`` (``handoff.access_report_ready``: complete the request) in
the same transaction, so "report stored" and "request completed" commit together.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import ConfigError
from app.crypto import Crypto
from app.datamap.connectors import SourceError, open_connectors
from app.datamap.identifiers import SubjectIdentifiers
from app.fulfilment.common import context_datamap, self_database_url, source_retry
from app.fulfilment.reports.builder import generate_access_report
from app.fulfilment.reports.store import purge_expired_access_reports, store_access_report
from app.fulfilment.reports.withholding import Withholding
from app.models import DsrRequest
from app.outbox import queue
from app.outbox.jobs import Dead, Outcome, PeriodicJob, Retry, Sent, WorkerContext
from app.requests.lifecycle import items_covered, unseal
from app.retention.store import RetainedSummary, list_retained
from app.subjects import identifiers as subjects

logger = logging.getLogger("dsr.access")

JOB_KIND = "job"
JOB_TOPIC = "fulfil.access"

# Called in the transaction that stores the report (the lifecycle completes the request).
AccessReportReady = Callable[..., Awaitable[None]]
# Signature: async def hook(session, *, request_id: UUID, report: AccessReport, now: datetime)


def decision_withholdings(crypto: Crypto, request: DsrRequest) -> list[Withholding]:
    """The items the reviewer refused (Art. 35(4)), withheld from the report with the reason.

    A refused category is each of its items withheld (``customs``: the customs code).
    """
    explanation = unseal(crypto, request.id, "decision", request.decision_note_encrypted)
    return [
        Withholding.decided(
            item=item,
            ground=entry["ground"],
            explanation=explanation if isinstance(explanation, str) else None,
        )
        for entry in request.refusals
        if entry.get("stage") == "decision" and entry.get("item")
        for item in sorted(items_covered({entry["item"]}))
    ]


def subject_blind_index(crypto: Crypto, identifiers: SubjectIdentifiers) -> str:
    """The blind index a subject token carries for these identifiers (phone first)."""
    if identifiers.phone:
        return crypto.blind_index("phone", identifiers.phone)
    assert identifiers.email is not None
    return crypto.blind_index("email", identifiers.email)


async def enqueue_access_fulfilment(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    identifiers: SubjectIdentifiers,
    subject_blind_index: str,
    withheld: Sequence[Withholding] = (),
    max_attempts: int | None = 30,
) -> uuid.UUID | None:
    """Queue the report job in the caller's transaction (once per request)."""
    return await queue.enqueue(
        session,
        crypto=crypto,
        now=now,
        kind=JOB_KIND,
        topic=JOB_TOPIC,
        payload={
            "request_id": str(request_id),
            "identifiers": identifiers.as_payload(),
            "subject": subject_blind_index,
            "withheld": [rule.as_payload() for rule in withheld],
        },
        request_ref=request_id,
        dedupe_key=f"{JOB_TOPIC}:{request_id}",
        max_attempts=max_attempts,
    )


async def handle_fulfil_access(message: Any, payload: Any, ctx: WorkerContext) -> Outcome:
    """Worker handler for ``job`` / ``fulfil.access``."""
    try:
        request_id = uuid.UUID(payload["request_id"])
        withheld = [Withholding.from_payload(item) for item in payload.get("withheld") or []]
        if "identifiers" in payload:
            identifiers = SubjectIdentifiers.from_payload(payload["identifiers"])
            subject = payload.get("subject") or subject_blind_index(ctx.crypto, identifiers)
    except (KeyError, TypeError, ValueError):
        return Dead("fulfil.access payload is malformed")
    async with ctx.db.sessionmaker() as session:
        subject_keys = [subject] if "identifiers" in payload else []
        if "identifiers" not in payload:
            # Queued by the lifecycle with the request id only: read who the subject is, and
            # what the decision withholds (Decree Art. 42(1)).
            request = await session.get(DsrRequest, request_id)
            if request is None:
                return Dead("fulfil.access for an unknown request")
            if request.status != "in_progress":
                return Sent("request no longer in progress")
            identifiers = await subjects.identifiers_of(
                session, crypto=ctx.crypto, identifier_ids=request.identifier_ids
            )
            subject = request.subject_index
            subject_keys = list(request.subject_indexes)
            withheld = [*withheld, *decision_withholdings(ctx.crypto, request)]
        # What a deletion kept apart under another law is still held (summaries only).
        retained: list[RetainedSummary] = await list_retained(session, subject_keys=subject_keys)
    try:
        datamap = context_datamap(ctx)
    except ConfigError:
        return Retry("data map cannot be loaded", timedelta(minutes=10))
    now = ctx.clock.now()
    try:
        async with open_connectors(
            datamap, self_url=self_database_url(ctx), http=ctx.http, crypto=ctx.crypto
        ) as connectors:
            report = await generate_access_report(
                connectors,
                request_id=request_id,
                subject=identifiers,
                now=now,
                withheld=withheld,
                retained=retained,
            )
    except SourceError as exc:
        return source_retry(message, exc, request_id=request_id, step="access")
    ttl = timedelta(days=ctx.settings.access_report_ttl_days)
    async with ctx.db.transaction() as session:
        stored = await store_access_report(
            session,
            crypto=ctx.crypto,
            report=report,
            subject_blind_index=subject,
            now=now,
            ttl=ttl,
        )
        if ctx.access_report_ready is not None:
            await ctx.access_report_ready(session, request_id=request_id, report=stored, now=now)
    logger.info(
        "access report stored",
        extra={
            "event": "access.report_stored",
            "request_ref": str(request_id),
            "count": len(report.items),
        },
    )
    return Sent()


async def purge_access_reports(ctx: WorkerContext) -> int:
    """Periodic job: destroy expired reports' content."""
    async with ctx.db.transaction() as session:
        return await purge_expired_access_reports(session, now=ctx.clock.now())


def purge_job() -> PeriodicJob:
    return PeriodicJob(
        name="access_report.purge", every=timedelta(hours=1), run=purge_access_reports
    )
