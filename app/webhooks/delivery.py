"""The worker side of processors' webhooks: sign, send, record each attempt, retry, alert.

Registered in ``app/worker.py`` for ``kind="webhook"`` with ``WEBHOOK_RETRY``
(app/outbox/retry.py). One outbox row is one delivery; each HTTP attempt is a
``webhook_attempt`` row. Only 2xx succeeds. 429/503 with ``Retry-After`` wait that long; 410
disables the processor and holds its notices; after the last try the delivery is dead and the
privacy officer is alerted; a processor failing for 5 days straight is disabled.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.clock import Clock, SystemClock
from app.db import driver_connection
from app.errors import WebhookUrlRefused
from app.models import OutboxMessage, Processor, WebhookAttempt
from app.notifications import messages
from app.outbox.jobs import Held, Outcome, Retry, Sent, WorkerContext
from app.webhooks import email_channel, notices, processors
from app.webhooks.signing import signed_headers, webhook_id
from app.webhooks.url_guard import check_webhook_url

logger = logging.getLogger("dsr.webhooks")

EXCERPT_BYTES = 1024
MAX_RETRY_AFTER = timedelta(hours=24)
# Successful host checks are reused this long before resolving again.
HOST_CHECK_TTL = 60.0


def retry_after(value: str | None, *, now: datetime) -> timedelta | None:
    """A ``Retry-After`` header (seconds or HTTP date) as a delay, capped at 24 h."""
    if not value:
        return None
    value = value.strip()
    delay: timedelta | None
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - now
    return max(timedelta(seconds=1), min(delay, MAX_RETRY_AFTER))


@dataclass(frozen=True)
class Endpoint:
    """What a worker needs to send to one processor (cached briefly)."""

    code: str
    url: str
    state: str
    keys: tuple[bytes, ...]
    failing: bool
    channel: str = "webhook"


@dataclass
class WebhookWorkerState:
    """Per worker process: concurrency limits, a short cache of endpoints and host checks."""

    semaphores: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    total: asyncio.Semaphore | None = None
    endpoints: dict[str, tuple[float, Endpoint | None]] = field(default_factory=dict)
    loading: dict[str, asyncio.Lock] = field(default_factory=dict)
    hosts: dict[str, float] = field(default_factory=dict)
    # The signature timestamp must be real time: receivers check it against their own clocks.
    signing_clock: Clock = field(default_factory=SystemClock)

    def overall(self, limit: int) -> asyncio.Semaphore:
        if self.total is None:
            self.total = asyncio.Semaphore(max(1, limit))
        return self.total

    def semaphore(self, code: str, limit: int) -> asyncio.Semaphore:
        if code not in self.semaphores:
            self.semaphores[code] = asyncio.Semaphore(max(1, limit))
        return self.semaphores[code]

    def forget(self, code: str) -> None:
        self.endpoints.pop(code, None)


def worker_state(ctx: WorkerContext) -> WebhookWorkerState:
    if ctx.webhooks is None:
        ctx.webhooks = WebhookWorkerState()
    return ctx.webhooks


async def _endpoint(ctx: WorkerContext, state: WebhookWorkerState, code: str) -> Endpoint | None:
    ttl = ctx.settings.webhook_processor_cache_seconds
    cached = state.endpoints.get(code)
    if cached is not None and time.monotonic() - cached[0] < ttl:
        return cached[1]
    lock = state.loading.setdefault(code, asyncio.Lock())
    async with lock:
        cached = state.endpoints.get(code)
        if cached is not None and time.monotonic() - cached[0] < ttl:
            return cached[1]
        now = ctx.clock.now()
        async with ctx.db.sessionmaker() as session:
            processor = (
                await session.exec(select(Processor).where(Processor.code == code))
            ).first()
        endpoint = None
        if processor is not None:
            endpoint = Endpoint(
                code=code,
                url=processor.webhook_url or "",
                state=processor.state,
                keys=tuple(processors.signing_keys(processor, crypto=ctx.crypto, now=now)),
                failing=processor.failing_since is not None,
                channel=processor.channel,
            )
        state.endpoints[code] = (time.monotonic(), endpoint)
        return endpoint


async def _check_host(ctx: WorkerContext, state: WebhookWorkerState, url: str) -> None:
    settings = ctx.settings
    checked = state.hosts.get(url)
    if checked is not None and time.monotonic() - checked < HOST_CHECK_TTL:
        return
    await check_webhook_url(url, env=settings.env, allow_private=settings.allow_private_webhooks)
    state.hosts[url] = time.monotonic()


@dataclass
class AttemptResult:
    outcome: str  # delivered | failed | gone | refused | held
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    excerpt: bytes | None = None  # the first 1 KB of the reply, kept only as a digest
    retry_after: timedelta | None = None


async def _post(
    ctx: WorkerContext, url: str, body: bytes, headers: dict[str, str]
) -> AttemptResult:
    settings = ctx.settings
    total = settings.webhook_timeout_seconds
    timeout = httpx.Timeout(total, connect=min(settings.webhook_connect_timeout_seconds, total))
    started = time.perf_counter()
    result = AttemptResult(outcome="failed")
    try:
        async with asyncio.timeout(total):
            async with ctx.http.stream(
                "POST", url, content=body, headers=headers, timeout=timeout
            ) as response:
                result.status_code = response.status_code
                excerpt = bytearray()
                async for chunk in response.aiter_bytes():
                    excerpt.extend(chunk)
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
                result.excerpt = bytes(excerpt[:EXCERPT_BYTES]) or None
                result.retry_after = retry_after(
                    response.headers.get("retry-after"), now=ctx.clock.now()
                )
    except (TimeoutError, httpx.TimeoutException):
        result.error = "timeout"
    except httpx.ConnectError:
        result.error = "connection failed"
    except httpx.HTTPError as exc:
        result.error = f"http error: {type(exc).__name__}"
    result.latency_ms = int((time.perf_counter() - started) * 1000)
    code = result.status_code
    if code is not None and result.error is None:
        if 200 <= code < 300:
            result.outcome = "delivered"
        elif code == 410:
            result.outcome = "gone"
            result.error = "endpoint answered 410 Gone"
        else:
            result.error = f"endpoint answered {code}"
            if code not in (429, 503):
                result.retry_after = None
    return result


async def deliver_webhook(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
    """Worker handler for ``kind="webhook"``: one signed POST to the processor, recorded."""
    state = worker_state(ctx)
    code = message.target or ""
    endpoint = await _endpoint(ctx, state, code)
    if endpoint is None or endpoint.state != "active":
        return await _hold(
            ctx, message, "processor not registered" if endpoint is None else "processor disabled"
        )
    if endpoint.channel == "email":
        return await email_channel.email_notice(message, payload, ctx)
    body = notices.notice_body(payload)
    settings = ctx.settings
    async with (
        state.semaphore(code, settings.webhook_max_concurrency_per_processor),
        state.overall(settings.webhook_max_concurrency),
    ):
        try:
            await _check_host(ctx, state, endpoint.url)
        except WebhookUrlRefused as exc:
            result = AttemptResult(outcome="refused", error=f"destination refused: {exc.detail}")
        else:
            stamp = int(state.signing_clock.now().timestamp())
            headers = signed_headers(
                endpoint.keys, msg_id=webhook_id(message.id), timestamp=stamp, body=body
            )
            headers["content-type"] = "application/json"
            result = await _post(ctx, endpoint.url, body, headers)
    return await _record(ctx, state, message, endpoint, result)


async def _hold(ctx: WorkerContext, message: OutboxMessage, reason: str) -> Outcome:
    """Keep a notice whose processor is disabled: held until enabled, this claim not counted."""
    logger.info(
        "webhook held",
        extra={"event": "webhook.held", "processor": message.target, "message_id": str(message.id)},
    )
    return Held(f"held: {reason}")


async def _record(
    ctx: WorkerContext,
    state: WebhookWorkerState,
    message: OutboxMessage,
    endpoint: Endpoint,
    result: AttemptResult,
) -> Outcome:
    now = ctx.clock.now()
    code = endpoint.code
    disabled_reason: str | None = None
    row = {
        "message_id": message.id,
        "processor_code": code,
        "event_type": message.topic,
        "attempt": message.attempts,
        "at": now,
        "outcome": result.outcome,
        "status_code": result.status_code,
        "latency_ms": result.latency_ms,
        "error": result.error[:500] if result.error else None,
        "response_bytes": len(result.excerpt) if result.excerpt else None,
        "response_digest": (
            ctx.crypto.mac("webhook.response", result.excerpt.hex()) if result.excerpt else None
        ),
    }
    if result.outcome == "delivered":
        # The common case: the attempt row is written by ``record_delivered_attempts`` in the
        # worker's transaction that marks this delivery (and the others finishing now) delivered.
        if endpoint.failing:
            state.forget(code)
        _log_attempt(message, code, result)
        return Sent(record=DeliveredAttempt(row, failing=code if endpoint.failing else None))
    async with ctx.db.transaction() as session:
        await session.execute(sa.insert(WebhookAttempt).values(**row))
        if result.outcome == "gone":
            disabled_reason = "endpoint answered 410 Gone"
        else:
            disabled_reason = await _failing_too_long(ctx, session, code=code, now=now)
        if disabled_reason is not None:
            await processors.disable_processor(
                session,
                now=now,
                code=code,
                reason=disabled_reason,
                detail={"message_id": str(message.id)},
            )
            await _alert_officer(
                ctx,
                session,
                now=now,
                template="processor_disabled",
                variables={"processor": code, "reason": disabled_reason},
                dedupe_key=f"processor-disabled:{code}:{now.isoformat()}",
            )
            state.forget(code)
    _log_attempt(message, code, result)
    if disabled_reason is not None:  # this notice is held too, with the rest
        return Held(result.error or disabled_reason, attempted=True)
    # No Retry-After: the worker waits as WEBHOOK_RETRY says for this attempt.
    return Retry(result.error or "not delivered", delay=result.retry_after)


@dataclass(frozen=True)
class DeliveredAttempt:
    """A successful attempt's row, and the processor whose failing streak it ends (if any)."""

    row: dict[str, Any]
    failing: str | None = None


_ATTEMPT_COLUMNS = (
    ("message_id", "uuid"),
    ("processor_code", "text"),
    ("event_type", "text"),
    ("attempt", "int"),
    ("at", "timestamptz"),
    ("outcome", "text"),
    ("status_code", "int"),
    ("latency_ms", "int"),
    ("error", "text"),
    ("response_bytes", "int"),
    ("response_digest", "text"),
)
# Every row of a group in one statement, one array per column: one prepared statement whatever
# the group's size.
_INSERT_ATTEMPTS = (
    f"INSERT INTO {WebhookAttempt.__tablename__} "
    f"({', '.join(name for name, _ in _ATTEMPT_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(_ATTEMPT_COLUMNS, 1))
    + ")"
)


async def record_delivered_attempts(session: AsyncSession, records: list[Any]) -> None:
    """Write successful attempts (``DeliveredAttempt``) in the worker's outcome transaction."""
    rows = [record.row for record in records]
    connection = await driver_connection(session)
    await connection.execute(
        _INSERT_ATTEMPTS, *([row[name] for row in rows] for name, _ in _ATTEMPT_COLUMNS)
    )
    codes = sorted({record.failing for record in records if record.failing})
    if codes:
        table = Processor.__tablename__
        await connection.execute(
            f"UPDATE {table} SET failing_since = NULL WHERE code = ANY($1::text[])", codes
        )


def _log_attempt(message: OutboxMessage, code: str, result: AttemptResult) -> None:
    logger.info(
        "webhook attempt",
        extra={
            "event": "webhook.attempt",
            "processor": code,
            "topic": message.topic,
            "message_id": str(message.id),
            "attempt": message.attempts,
            "outcome": result.outcome,
            "status": result.status_code,
            "duration_ms": result.latency_ms,
            "reason": result.error,  # why it failed (a refused destination says so), or None
        },
    )


async def _failing_too_long(
    ctx: WorkerContext, session: Any, *, code: str, now: datetime
) -> str | None:
    """Start or continue this processor's failing streak; a reason to disable after 5 days."""
    since = (
        await session.execute(
            sa.update(Processor)
            .where(col(Processor.code) == code)
            .values(failing_since=sa.func.coalesce(col(Processor.failing_since), now))
            .returning(col(Processor.failing_since))
        )
    ).scalar_one_or_none()
    if since is None:
        return None
    limit = timedelta(days=ctx.settings.webhook_disable_after_failing_days)
    if now - since < limit:
        return None
    succeeded = (
        await session.execute(
            sa.select(sa.func.max(col(WebhookAttempt.at))).where(
                col(WebhookAttempt.processor_code) == code,
                col(WebhookAttempt.outcome) == "delivered",
                col(WebhookAttempt.at) >= since,
            )
        )
    ).scalar_one_or_none()
    if succeeded is not None:
        # A success the cached endpoint did not reset: the streak starts at the next failure.
        first_failure = (
            await session.execute(
                sa.select(sa.func.min(col(WebhookAttempt.at))).where(
                    col(WebhookAttempt.processor_code) == code,
                    col(WebhookAttempt.outcome) != "delivered",
                    col(WebhookAttempt.at) > succeeded,
                )
            )
        ).scalar_one_or_none() or now
        await session.execute(
            sa.update(Processor)
            .where(col(Processor.code) == code)
            .values(failing_since=first_failure)
        )
        if now - first_failure < limit:
            return None
    days = int(limit.total_seconds() // 86400)
    return f"failing for {days} days"


async def _alert_officer(
    ctx: WorkerContext,
    session: Any,
    *,
    now: datetime,
    template: str,
    variables: dict[str, Any],
    dedupe_key: str,
) -> None:
    destination = ctx.settings.privacy_officer_email
    if not destination:
        logger.warning(
            "no privacy officer address for an alert",
            extra={"event": "webhook.alert_unaddressed", "job": template},
        )
        return
    await messages.queue_notice(
        session,
        crypto=ctx.crypto,
        now=now,
        channel="email",
        destination=destination,
        template=template,
        variables=variables,
        locale=ctx.settings.default_locale,
        dedupe_key=dedupe_key,
    )


async def on_webhook_dead(message: OutboxMessage, error: str, ctx: WorkerContext) -> None:
    """After the last try: audit the dead delivery and alert the privacy officer."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        await trail.record(
            session,
            now=now,
            actor="worker",
            role="system",
            action="webhook.dead",
            target_type="webhook",
            target_id=str(message.id),
            details={
                "processor": message.target,
                "event_type": message.topic,
                "attempts": message.attempts,
                "error": error[:200],
                "request_ref": str(message.request_ref) if message.request_ref else None,
            },
        )
        await _alert_officer(
            ctx,
            session,
            now=now,
            template="webhook_dead",
            variables={
                "processor": message.target,
                "event_type": message.topic,
                "webhook_id": webhook_id(message.id),
                "attempts": message.attempts,
                "error": error[:200],
            },
            dedupe_key=f"webhook-dead:{message.id}:{now.isoformat()}",
        )


async def alert_held_notices(ctx: WorkerContext) -> int:
    """Periodic: tell the privacy officer, once a day per processor, about held notices."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        rows = (
            await session.execute(
                sa.select(
                    col(OutboxMessage.target),
                    sa.func.count(),
                    sa.func.min(col(OutboxMessage.created_at)),
                )
                .where(
                    col(OutboxMessage.kind) == notices.WEBHOOK_KIND,
                    col(OutboxMessage.status) == "held",
                )
                .group_by(col(OutboxMessage.target))
            )
        ).all()
        for target, count, oldest in rows:
            await _alert_officer(
                ctx,
                session,
                now=now,
                template="webhooks_held",
                variables={"processor": target, "count": count, "oldest": oldest.isoformat()},
                dedupe_key=f"webhooks-held:{target}:{now.date().isoformat()}",
            )
    return len(rows)
