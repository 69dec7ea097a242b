"""The lifecycle's worker jobs: automatic approval, a dead fulfilment job marks the request, old
keys are purged."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from app.crypto import Crypto
from app.models import OutboxMessage
from app.outbox import queue
from app.outbox.jobs import Outcome, PeriodicJob, Sent, WorkerContext
from app.outbox.retry import FULFILMENT_RETRY
from app.requests import completion, decisions, idempotency

AUTO_REVIEW_TOPIC = "request.auto_review"


def auto_review_message(*, crypto: Crypto, request_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """The outbox row (``queue.message_values``) of the job that approves an OTP-verified access
    request: queued at intake, so the subject's request returns without the approval's work."""
    return queue.message_values(
        crypto=crypto,
        now=now,
        kind="job",
        topic=AUTO_REVIEW_TOPIC,
        payload={"request_id": str(request_id)},
        request_ref=request_id,
        dedupe_key=f"request:{request_id}:auto_review",
        max_attempts=FULFILMENT_RETRY.max_attempts,
    )


async def handle_auto_review(
    message: OutboxMessage, payload: dict[str, Any], ctx: WorkerContext
) -> Outcome:
    async with ctx.db.transaction() as session:
        await decisions.approve_automatically(
            session,
            crypto=ctx.crypto,
            settings=ctx.settings,
            now=ctx.clock.now(),
            request_id=uuid.UUID(payload["request_id"]),
        )
    return Sent()


async def on_job_dead(message: OutboxMessage, error: str, ctx: WorkerContext) -> None:
    """A ``fulfil.<type>`` job that exhausted its retries marks its request's fulfilment failed."""
    if not message.topic.startswith("fulfil.") or message.request_ref is None:
        return
    async with ctx.db.transaction() as session:
        await completion.fail_fulfilment(
            session,
            crypto=ctx.crypto,
            now=ctx.clock.now(),
            request_id=message.request_ref,
            error=f"job dead: {error}"[:200],
        )


async def purge_idempotency(ctx: WorkerContext) -> int:
    async with ctx.db.transaction() as session:
        return await idempotency.purge_expired(session, now=ctx.clock.now())


PURGE_IDEMPOTENCY = PeriodicJob(
    name="purge-idempotency-keys", every=timedelta(hours=1), run=purge_idempotency
)
