"""The lifecycle's worker hooks: a dead fulfilment job marks the request, old keys are purged."""

from __future__ import annotations

from datetime import timedelta

from app.models import OutboxMessage
from app.outbox.jobs import PeriodicJob, WorkerContext
from app.requests import completion, idempotency


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
