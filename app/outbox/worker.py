"""The worker loop: sends what the outbox holds and runs periodic jobs.

Stateless: any number of workers may run against one database. What it runs comes from a
``Registry`` (``app/worker.py:build_registry`` registers every domain's handlers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from app.db import plain_url
from app.models import OutboxMessage
from app.outbox import periodic, queue
from app.outbox.jobs import (
    Dead,
    GroupCommit,
    Held,
    Outcome,
    PeriodicJob,
    Recorder,
    Registry,
    Retry,
    Sent,
    WorkerContext,
)
from app.outbox.wakeup import Wakeup

logger = logging.getLogger("dsr.worker")

# In a large batch, outcomes finishing within this long of each other are written in one
# transaction: a fan-out of webhooks (a few in flight, a millisecond or two each) then commits
# tens of outcomes at a time. A small batch (a notice or two) is written at once, and so is the
# group holding a batch's last outcome (the next claim does not wait for the linger).
OUTCOME_LINGER_SECONDS = 0.02
LINGER_FROM_BATCH = 16


class Worker:
    def __init__(self, ctx: WorkerContext, registry: Registry) -> None:
        self.ctx = ctx
        self.registry = registry
        # The slot each job was last tried in by this worker: saves a claim per round.
        self._tried: dict[str, datetime] = {}
        # Outcomes finishing together share one transaction (one BEGIN/COMMIT per group).
        self._outcomes: GroupCommit[tuple[OutboxMessage, Outcome, datetime]] = GroupCommit(
            self._write_outcomes
        )
        self._handling = 0  # messages of the current batch not yet at their outcome

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
        large = len(messages) >= LINGER_FROM_BATCH
        self._outcomes.linger = OUTCOME_LINGER_SECONDS if large else 0.0
        self._handling = len(messages)
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
            elif message.payload is None:
                outcome = Dead("payload destroyed")
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
        if isinstance(outcome, Retry) and self.registry.policy_for(message).exhausted(
            message.attempts, cap=message.max_attempts
        ):
            outcome = Dead(outcome.error)
        if isinstance(outcome, Held) and not outcome.attempted:
            message.attempts -= 1  # this claim was no attempt (the row is given it back too)
        self._handling -= 1
        await self._outcomes.submit((message, outcome, now), last=self._handling == 0)
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
            # What the successes' domains keep of them (webhook attempt rows), in the same
            # transaction: delivered and its record commit together, one recorder call each.
            records: dict[Recorder, list[Any]] = {}
            for message, outcome, _ in batch:
                if isinstance(outcome, Sent) and outcome.record is not None:
                    recorder = self.registry.recorder_for(message)
                    records.setdefault(recorder, []).append(outcome.record)
            for recorder, items in records.items():
                await recorder(session, items)
            for message, outcome, now in batch:
                if isinstance(outcome, Retry):
                    delay = outcome.delay
                    if delay is None:
                        delay = self.registry.policy_for(message).delay(message.attempts)
                    await queue.mark_retry(
                        session, message_id=message.id, now=now, at=now + delay, error=outcome.error
                    )
                elif isinstance(outcome, Held):
                    await queue.mark_held(
                        session,
                        message_id=message.id,
                        now=now,
                        reason=outcome.reason,
                        attempted=outcome.attempted,
                    )
                elif isinstance(outcome, Dead):
                    await queue.mark_dead(
                        session, message_id=message.id, now=now, error=outcome.error
                    )
            # Payloads kept for no time (one-time codes) go in the same transaction.
            finished = [
                message.id
                for message, outcome, _ in batch
                if isinstance(outcome, Sent | Dead)
                and self.registry.keeps_payload_for(message) == timedelta(0)
            ]
            if finished:
                await queue.destroy_payloads(
                    session, message_ids=finished, now=max(now for _, _, now in batch)
                )

    async def run_periodic(self) -> None:
        """Run each periodic job whose current slot no worker has claimed yet."""
        for job in self.registry.periodic:
            await self._run_job(job)

    async def _run_job(self, job: PeriodicJob) -> None:
        now = self.ctx.clock.now()
        last = self._tried.get(job.name)
        if last is not None and now - last < job.every:
            return  # this worker already tried the current slot
        async with self.ctx.db.transaction() as session:
            slot, claimed = await periodic.claim_slot(
                session, job=job.name, every=job.every, now=now
            )
        self._tried[job.name] = slot
        if not claimed:
            return  # another worker ran it in this slot
        count: int | None = None
        error: str | None = None
        try:
            count = await job.run(self.ctx)
        except Exception as exc:  # one failing job must not keep the others from running
            error = type(exc).__name__
            logger.exception(
                "periodic job failed", extra={"event": "worker.periodic_error", "job": job.name}
            )
        async with self.ctx.db.transaction() as session:
            await periodic.finish_slot(
                session, job=job.name, slot=slot, now=self.ctx.clock.now(), count=count, error=error
            )
        if error is None:
            # A job that found nothing to do (audit.seal every 2 s) is not news on the console.
            logger.log(
                logging.INFO if count else logging.DEBUG,
                "periodic job done",
                extra={"event": "worker.periodic", "job": job.name, "count": count},
            )

    async def run_forever(self, stop: asyncio.Event) -> None:
        logger.info("worker started", extra={"event": "worker.started"})
        wakeup = None
        if self.ctx.settings.worker_listen:
            url = self.ctx.db.engine.url.render_as_string(hide_password=False)
            wakeup = Wakeup(plain_url(url))
        try:
            while not stop.is_set():
                if wakeup is not None:
                    wakeup.clear()  # a message queued during this round wakes the next wait
                try:
                    await self.run_periodic()
                    handled = await self.run_once()
                except Exception:  # database restart, network: keep going, nothing is lost
                    logger.exception("worker round failed", extra={"event": "worker.round_error"})
                    handled = 0
                if handled == 0:
                    await self._wait(stop, wakeup)
        finally:
            if wakeup is not None:
                await wakeup.close()
        logger.info("worker stopped", extra={"event": "worker.stopped"})

    async def _wait(self, stop: asyncio.Event, wakeup: Wakeup | None = None) -> None:
        """Idle until a message is queued (LISTEN/NOTIFY) or the next poll, whichever is first."""
        timeout = self.ctx.settings.worker_poll_seconds
        if wakeup is not None:
            await wakeup.wait(stop, timeout)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=timeout)
