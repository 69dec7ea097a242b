"""Plan, then apply: how correction, suspension and consent withdrawal change the sources safely.

A fulfilment job (``fulfil.correction`` ...) only **reads**: it finds the subject's records
through the connectors and works out a plan (which records get which new values or are erased,
which processor gets which notice, what the result is). If a source is down it answers
``Retry`` and nothing has changed anywhere. The plan is then queued, encrypted, as the job
``fulfil.apply`` (or, when it changes no source, finished at once).

``fulfil.apply`` writes each source in one call (all or nothing per source), in the data map's
source order. Every change is idempotent: new values are absolute, erasures converge, and each
change re-checks that the record still belongs to the subject, so a record already changed by
an earlier attempt (its phone no longer matches) is reported missing and left alone. When a
source fails mid-way, the job answers ``Retry`` with the **same plan**: nothing is compensated,
the sources already written are written again to the same values, and nothing else happens
until every source has applied: the correction's restriction stays in force (the half-corrected
data is "not used or provided"), no processor is told, the request stays ``in_progress``.
Only when every source has applied does ONE database transaction lift the restriction, record
the suspensions, queue the processors' notices and complete the request.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import ConfigError
from app.crypto import Crypto
from app.datamap.connectors import Erasure, FieldUpdate, SourceError, open_connectors
from app.datamap.identifiers import SubjectIdentifiers
from app.fulfilment import common
from app.fulfilment.common import context_datamap, self_database_url, source_retry
from app.models import DsrRequest, OutboxMessage
from app.outbox import queue
from app.outbox.jobs import Dead, Outcome, Retry, Sent, WorkerContext
from app.outbox.retry import FULFILMENT_RETRY
from app.requests import lifecycle
from app.retention import restrictions
from app.subjects import identifiers as subjects
from app.vocabulary import OPTIONAL_PURPOSES
from app.webhooks import notices

logger = logging.getLogger("dsr.fulfilment")

APPLY_TOPIC = "fulfil.apply"


async def open_request(
    ctx: WorkerContext, request_id: uuid.UUID
) -> tuple[DsrRequest, dict[str, Any], SubjectIdentifiers] | None:
    """The request, its body and the subject's identifiers; None unless it is in progress."""
    async with ctx.db.sessionmaker() as session:
        request = await session.get(DsrRequest, request_id)
        if request is None or request.status != "in_progress":
            return None
        body = lifecycle.unseal(ctx.crypto, request.id, "body", request.body_encrypted) or {}
        identifiers = await subjects.identifiers_of(
            session, crypto=ctx.crypto, identifier_ids=request.identifier_ids
        )
    return request, body, identifiers


def decision_refused(request: DsrRequest) -> set[str]:
    """Parts the decision already refused (a partial approval): not to be carried out."""
    return {str(entry["item"]) for entry in request.refusals or [] if entry.get("item")}


async def finish(
    session: AsyncSession,
    *,
    ctx: WorkerContext,
    request_id: uuid.UUID,
    plan: dict[str, Any],
    now: datetime,
) -> None:
    """The one transaction after the sources: lift, suspend, notify processors, complete."""
    request = await lifecycle.lock_request(session, request_id)
    if request.status != "in_progress":
        return
    if request.type == "correction":
        await restrictions.lift_restrictions(session, request_id=request_id, now=now)
    suspend = plan.get("suspend")
    if request.type == "consent_withdrawal":
        # A provisional suspension from intake the decision did not grant ends here.
        kept = set((suspend or {}).get("purposes") or [])
        await restrictions.lift_suspension(
            session,
            request_id=request_id,
            now=now,
            purposes=sorted(OPTIONAL_PURPOSES - kept),
        )
    if suspend and suspend.get("purposes"):
        await restrictions.suspend_purposes(
            session,
            subject_keys=request.subject_indexes,
            purposes=suspend["purposes"],
            request_id=request_id,
            now=now,
            consent_withdrawal=bool(suspend.get("consent_withdrawal")),
        )
    for notice in plan.get("notices", []):
        await notices.queue_processor_notice(
            session,
            crypto=ctx.crypto,
            now=now,
            processor_code=notice["processor"],
            event_type=notice["event_type"],
            data=notice["data"],
            request_ref=request_id,
        )
    await common.complete(
        session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=now,
        request_id=request_id,
        result=plan.get("result") or {},
        refused_items=plan.get("refused_items"),
    )


async def enqueue_apply(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request: DsrRequest,
    plan: dict[str, Any],
) -> uuid.UUID | None:
    """Queue the plan (encrypted in the outbox) for ``fulfil.apply``, once per attempt."""
    return await queue.enqueue(
        session,
        crypto=crypto,
        now=now,
        kind="job",
        topic=APPLY_TOPIC,
        payload={"request_id": str(request.id), "plan": plan},
        request_ref=request.id,
        dedupe_key=f"{APPLY_TOPIC}:{request.id}:{request.round}:{request.fulfilment_attempts}",
        max_attempts=FULFILMENT_RETRY.max_attempts,
    )


async def unfinished_plan(
    session: AsyncSession, *, crypto: Crypto, request: DsrRequest
) -> dict[str, Any] | None:
    """The plan of this round's ``fulfil.apply`` that ran out of attempts, if any.

    Its sources may be partly written (identifiers already corrected no longer find the
    subject), so an operator's retry must finish that plan rather than read the sources again.
    """
    message = (
        await session.exec(
            select(OutboxMessage)
            .where(
                col(OutboxMessage.topic) == APPLY_TOPIC,
                col(OutboxMessage.request_ref) == request.id,
                col(OutboxMessage.status) == "dead",
                col(OutboxMessage.dedupe_key).startswith(
                    f"{APPLY_TOPIC}:{request.id}:{request.round}:"
                ),
            )
            .order_by(col(OutboxMessage.created_at).desc())
            .limit(1)
        )
    ).first()
    if message is None or message.payload is None:
        return None
    payload = queue.read_payload(crypto, message)
    plan: dict[str, Any] = payload["plan"]
    return plan


async def resume(ctx: WorkerContext, *, request: DsrRequest, now: datetime) -> bool:
    """Queue again the unfinished plan of an earlier attempt; False if there is none."""
    async with ctx.db.transaction() as session:
        plan = await unfinished_plan(session, crypto=ctx.crypto, request=request)
        if plan is None:
            return False
        await enqueue_apply(session, crypto=ctx.crypto, now=now, request=request, plan=plan)
    return True


async def conclude(
    ctx: WorkerContext, *, request: DsrRequest, plan: dict[str, Any], now: datetime
) -> None:
    """Finish at once when the plan changes no source; otherwise queue ``fulfil.apply``."""
    async with ctx.db.transaction() as session:
        if plan.get("changes"):
            await enqueue_apply(session, crypto=ctx.crypto, now=now, request=request, plan=plan)
        else:
            await finish(session, ctx=ctx, request_id=request.id, plan=plan, now=now)


async def handle_apply(message: Any, payload: Any, ctx: WorkerContext) -> Outcome:
    """Worker handler for ``job`` / ``fulfil.apply``: write the plan's changes, then finish."""
    try:
        request_id = uuid.UUID(payload["request_id"])
        plan: dict[str, Any] = payload["plan"]
        changes: list[dict[str, Any]] = list(plan.get("changes") or [])
    except (KeyError, TypeError, ValueError):
        return Dead("fulfil.apply payload is malformed")
    opened = await open_request(ctx, request_id)
    if opened is None:
        return Sent("request no longer in progress")
    _, _, identifiers = opened
    try:
        datamap = context_datamap(ctx)
    except ConfigError:
        return Retry("data map cannot be loaded", timedelta(minutes=10))
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        by_source[change["source"]].append(change)
    applied = missing = 0
    try:
        async with open_connectors(
            datamap, self_url=self_database_url(ctx), http=ctx.http, crypto=ctx.crypto
        ) as connectors:
            for source in [name for name in datamap.sources if name in by_source]:
                connector = connectors.for_source(source)
                updates = [
                    FieldUpdate(c["collection"], c["role"], c["key"], dict(c["values"]))
                    for c in by_source[source]
                    if c["kind"] == "correct"
                ]
                erasures = [
                    Erasure(
                        c["collection"],
                        c["role"],
                        c["key"],
                        None if c.get("columns") is None else tuple(c["columns"]),
                    )
                    for c in by_source[source]
                    if c["kind"] == "erase"
                ]
                for result in (
                    await connector.correct(updates, subject=identifiers) if updates else None,
                    await connector.erase(erasures, subject=identifiers) if erasures else None,
                ):
                    if result is not None:
                        applied += result.applied
                        missing += len(result.missing)
    except SourceError as exc:
        return source_retry(message, exc, request_id=request_id, step="fulfil.apply")
    except (KeyError, ValueError) as exc:
        # The data map changed under the plan: an operator retries the fulfilment (re-plans).
        return Dead(f"plan no longer fits the data map ({type(exc).__name__})")
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        await finish(session, ctx=ctx, request_id=request_id, plan=plan, now=now)
    logger.info(
        "fulfilment applied",
        extra={"event": "fulfil.applied", "request_ref": str(request_id), "count": applied},
    )
    return Sent(None if not missing else f"{missing} records no longer matched (already done)")
