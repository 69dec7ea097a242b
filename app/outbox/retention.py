"""Destroy finished messages' payloads (PIPA Art. 21: destroyed once the purpose is met).

A delivered, dead or cancelled message keeps its encrypted payload (notice texts,
destinations, one-time codes) for ``outbox_payload_retention_days`` after it finished, long
enough to replay it; then the payload is destroyed and the row stays as the delivery record
(kind, topic, target, times, attempts, errors). A message registered with no payload time
(``Registry.keep_payload``, the one-time code) loses it in the transaction that finishes it;
this job catches any left. A dead fulfilment job of a request still open keeps its payload:
an operator's retry resumes its plan (app/fulfilment/plan.py:unfinished_plan).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from app.models import DsrRequest, OutboxMessage
from app.models.requests import OPEN_STATUSES
from app.outbox import queue
from app.outbox.jobs import PeriodicJob, WorkerContext

logger = logging.getLogger("dsr.outbox")

FINISHED = ("delivered", "dead", "cancelled")
JOB_NAME = "outbox.destroy_payloads"


def _matches(key: str) -> Any:
    kind, _, topic = key.partition(":")
    condition = col(OutboxMessage.kind) == kind
    return sa.and_(condition, col(OutboxMessage.topic) == topic) if topic else condition


async def _destroy_batches(ctx: WorkerContext, *, where: Any, cutoff: datetime) -> int:
    """Destroy matching payloads finished before ``cutoff``, a bounded batch per transaction."""
    resumable = sa.and_(
        col(OutboxMessage.kind) == "job",
        col(OutboxMessage.status) == "dead",
        sa.exists().where(
            col(DsrRequest.id) == col(OutboxMessage.request_ref),
            col(DsrRequest.status).in_(OPEN_STATUSES),
        ),
    )
    size = ctx.settings.outbox_retention_batch_size
    total = 0
    while True:
        now = ctx.clock.now()
        async with ctx.db.transaction() as session:
            ids = list(
                (
                    await session.execute(
                        sa.select(col(OutboxMessage.id))
                        .where(
                            col(OutboxMessage.payload).is_not(None),
                            col(OutboxMessage.status).in_(FINISHED),
                            col(OutboxMessage.updated_at) <= cutoff,
                            where,
                            sa.not_(resumable),
                        )
                        .order_by(col(OutboxMessage.updated_at))
                        .limit(size)
                        .with_for_update(skip_locked=True)
                    )
                ).scalars()
            )
            await queue.destroy_payloads(session, message_ids=ids, now=now)
        total += len(ids)
        if len(ids) < size:
            return total


async def destroy_finished_payloads(
    ctx: WorkerContext, *, keep_payload: dict[str, timedelta] | None = None
) -> int:
    """Destroy the payloads of messages finished longer ago than their retention; the count."""
    now = ctx.clock.now()
    overrides = keep_payload or {}
    total = 0
    for key, period in overrides.items():
        total += await _destroy_batches(ctx, where=_matches(key), cutoff=now - period)
    default = timedelta(days=ctx.settings.outbox_payload_retention_days)
    others = sa.not_(sa.or_(*(_matches(key) for key in overrides))) if overrides else sa.true()
    total += await _destroy_batches(ctx, where=others, cutoff=now - default)
    if total:
        logger.info(
            "outbox payloads destroyed",
            extra={"event": "outbox.payloads_destroyed", "count": total},
        )
    return total


def destroy_payloads_job(keep_payload: dict[str, timedelta]) -> PeriodicJob:
    """The hourly job, knowing the registry's per-kind payload times."""

    async def run(ctx: WorkerContext) -> int:
        return await destroy_finished_payloads(ctx, keep_payload=keep_payload)

    return PeriodicJob(name=JOB_NAME, every=timedelta(hours=1), run=run)
