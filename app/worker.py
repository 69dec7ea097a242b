"""The worker loop: sends what the outbox holds and runs periodic jobs.

Stateless: any number of workers may run against one database. Handlers are registered per
message ``kind`` (or ``kind:topic`` for a more specific one) by ``build_handlers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import zlib
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa

from app.audit import trail
from app.clock import Clock
from app.config import Settings
from app.crypto import Crypto
from app.datamap.schema import DataMap
from app.db import Database
from app.fulfilment import access, common, correction, deletion, handoff, plan, suspension
from app.models import OutboxMessage
from app.notifications import messages as notifications
from app.outbox import queue
from app.outbox.jobs import (
    Dead,
    GroupCommit,
    Outcome,
    PeriodicJob,
    Registry,
    Retry,
    Sent,
    WorkerContext,
)
from app.requests import jobs
from app.retention import store
from app.subjects import verification
from app.webhooks import delivery

logger = logging.getLogger("dsr.worker")

# Default retry schedule for messages whose handler does not choose its own delay.
DEFAULT_BACKOFF = (5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600)


def build_registry() -> Registry:
    """Every handler and periodic job the worker runs. Add new kinds here."""
    return Registry(
        handlers={
            "notification": notifications.handle_notification,
            f"job:{access.JOB_TOPIC}": access.handle_fulfil_access,
            f"job:{deletion.JOB_TOPIC}": deletion.handle_fulfil_deletion,
            f"job:{correction.JOB_TOPIC}": (correction.handle_fulfil_correction),
            f"job:{suspension.SUSPENSION_TOPIC}": (suspension.handle_fulfil_suspension),
            f"job:{suspension.WITHDRAWAL_TOPIC}": (suspension.handle_fulfil_consent_withdrawal),
            f"job:{plan.APPLY_TOPIC}": plan.handle_apply,
            f"job:{jobs.AUTO_REVIEW_TOPIC}": jobs.handle_auto_review,
            "webhook": delivery.deliver_webhook,
        },
        on_dead={"job": jobs.on_job_dead, "webhook": delivery.on_webhook_dead},
        periodic=[
            PeriodicJob(
                name="webhooks-held-alert",
                every=timedelta(minutes=10),
                run=delivery.alert_held_notices,
            ),
            trail.SEAL_JOB,
            access.purge_job(),
            store.PURGE_JOB,
            jobs.PURGE_IDEMPOTENCY,
            PeriodicJob(
                "verifications.purge", timedelta(hours=1), verification.purge_verifications
            ),
        ],
    )


def build_context(
    *,
    settings: Settings,
    db: Database,
    crypto: Crypto,
    clock: Clock,
    http: httpx.AsyncClient,
    datamap: DataMap,
) -> WorkerContext:
    """The context every handler gets: the same in `dsr serve`, `dsr worker` and the tests."""
    return WorkerContext(
        settings=settings,
        db=db,
        crypto=crypto,
        clock=clock,
        http=http,
        extras={
            common.DATAMAP: datamap,
            access.ACCESS_REPORT_READY: handoff.access_report_ready(
                crypto=crypto, settings=settings
            ),
        },
    )


__all__ = [
    "Dead",
    "Outcome",
    "PeriodicJob",
    "Registry",
    "Retry",
    "Sent",
    "Worker",
    "WorkerContext",
    "backoff_delay",
    "build_context",
    "build_registry",
]


def backoff_delay(attempt: int, schedule: tuple[int, ...] = DEFAULT_BACKOFF) -> timedelta:
    """Exponential-ish backoff with ±20 % jitter, so retries from many workers spread out."""
    base = schedule[min(attempt - 1, len(schedule) - 1)]
    return timedelta(seconds=base * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not security


class Worker:
    def __init__(self, ctx: WorkerContext, registry: Registry) -> None:
        self.ctx = ctx
        self.registry = registry
        self._last_periodic: dict[str, datetime] = {}
        # Outcomes finishing together share one transaction (one BEGIN/COMMIT per group).
        self._outcomes: GroupCommit[tuple[OutboxMessage, Outcome, datetime]] = GroupCommit(
            self._write_outcomes
        )

    async def run_once(self, *, kinds: list[str] | None = None) -> int:
        """Claim one batch of due messages and send them; returns how many were handled."""
        settings = self.ctx.settings
        async with self.ctx.db.transaction() as session:
            messages = await queue.claim_due(
                session,
                now=self.ctx.clock.now(),
                limit=settings.worker_batch_size,
                lease=timedelta(seconds=settings.worker_lease_seconds),
                kinds=kinds,
            )
        if not messages:
            return 0
        await asyncio.gather(*(self._handle(message) for message in messages))
        return len(messages)

    async def drain(self, *, max_rounds: int = 100, kinds: list[str] | None = None) -> int:
        """Send until nothing is due (tests and `dsr worker --once`)."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once(kinds=kinds)
            if handled == 0:
                break
            total += handled
        return total

    async def _handle(self, message: OutboxMessage) -> None:
        handler = self.registry.handler_for(message)
        try:
            if handler is None:
                outcome: Outcome = Dead(f"no handler for {message.kind}:{message.topic}")
            else:
                payload = queue.read_payload(self.ctx.crypto, message)
                outcome = await handler(message, payload, self.ctx)
        except Exception as exc:  # a handler bug must not stop the loop or lose the message
            logger.exception(
                "handler failed",
                extra={
                    "event": "worker.handler_error",
                    "kind": message.kind,
                    "topic": message.topic,
                },
            )
            outcome = Retry(f"handler error: {type(exc).__name__}")
        await self._record(message, outcome)

    async def _record(self, message: OutboxMessage, outcome: Outcome) -> None:
        now = self.ctx.clock.now()
        if (
            isinstance(outcome, Retry)
            and message.max_attempts is not None
            and message.attempts >= message.max_attempts
        ):
            outcome = Dead(outcome.error)
        await self._outcomes.submit((message, outcome, now))
        extra = {
            "event": "worker.outcome",
            "kind": message.kind,
            "topic": message.topic,
            "message_id": str(message.id),
            "attempt": message.attempts,
            "outcome": type(outcome).__name__.lower(),
        }
        if isinstance(outcome, Dead):
            logger.error("message dead after retries", extra=extra)
            hook = self.registry.on_dead.get(message.kind)
            if hook is not None:
                await hook(message, outcome.error, self.ctx)
        else:
            logger.info("message handled", extra=extra)

    async def _write_outcomes(self, batch: list[tuple[OutboxMessage, Outcome, datetime]]) -> None:
        async with self.ctx.db.transaction() as session:
            delivered = [message.id for message, outcome, _ in batch if isinstance(outcome, Sent)]
            if delivered:
                latest = max(now for _, outcome, now in batch if isinstance(outcome, Sent))
                await queue.mark_delivered_many(session, message_ids=delivered, now=latest)
            for message, outcome, now in batch:
                if isinstance(outcome, Retry):
                    delay = outcome.delay or backoff_delay(message.attempts)
                    await queue.mark_retry(
                        session, message_id=message.id, now=now, at=now + delay, error=outcome.error
                    )
                elif isinstance(outcome, Dead):
                    await queue.mark_dead(
                        session, message_id=message.id, now=now, error=outcome.error
                    )

    async def run_periodic(self) -> None:
        """Run each periodic job that is due; an advisory lock keeps it to one worker at a time."""
        now = self.ctx.clock.now()
        for job in self.registry.periodic:
            last = self._last_periodic.get(job.name)
            if last is not None and now - last < job.every:
                continue
            lock_id = zlib.crc32(job.name.encode())
            async with self.ctx.db.transaction() as session:
                got = (
                    await session.execute(sa.select(sa.func.pg_try_advisory_xact_lock(lock_id)))
                ).scalar()
                if not got:
                    continue
                self._last_periodic[job.name] = now
                count = await job.run(self.ctx)
            logger.info(
                "periodic job done",
                extra={"event": "worker.periodic", "job": job.name, "count": count},
            )

    async def run_forever(self, stop: asyncio.Event) -> None:
        logger.info("worker started", extra={"event": "worker.started"})
        while not stop.is_set():
            try:
                await self.run_periodic()
                handled = await self.run_once()
            except Exception:  # database restart, network: keep going, nothing is lost
                logger.exception("worker round failed", extra={"event": "worker.round_error"})
                handled = 0
            if handled == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        stop.wait(), timeout=self.ctx.settings.worker_poll_seconds
                    )
        logger.info("worker stopped", extra={"event": "worker.stopped"})
