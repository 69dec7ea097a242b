"""The clock on every request: what is due today, soon, overdue, postponed or waiting on a
processor; the daily digest to the privacy officer and each owner; the overdue alert.

Both worker jobs are idempotent on their own, whatever runs them and how often: the digest's
outbox dedupe key carries the local date and the recipient, the alert's the request and its due
date (and the request remembers it was alerted), so two workers never send either twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import SYSTEM, Actor
from app.config import Settings
from app.models import DsrRequest, OutboxMessage
from app.models.requests import OPEN_STATUSES
from app.notifications import messages
from app.outbox.jobs import PeriodicJob, WorkerContext
from app.requests import deadlines
from app.requests.lifecycle import record
from app.requests.notices import reference
from app.requests.queue import queue_row
from app.vocabulary import TYPE_LABELS
from app.webhooks.processors import awaiting_clauses

logger = logging.getLogger("dsr.sla")

LIST_LIMIT = 50
ALERT_BATCH = 200
BUCKETS = ("overdue", "due_today", "due_soon", "postponed", "awaiting_acknowledgement")


def _bucket_clauses(bucket: str, *, now: datetime, tz: str, within_days: int) -> list[Any]:
    open_ = col(DsrRequest.status).in_(OPEN_STATUSES)
    today = deadlines.local_date(now, tz)
    if bucket == "overdue":
        return [open_, col(DsrRequest.due_at) < now]
    if bucket == "due_today":
        end = deadlines.end_of_local_day(today, tz)
        return [open_, col(DsrRequest.due_at) >= now, col(DsrRequest.due_at) <= end]
    if bucket == "due_soon":
        last = deadlines.end_of_local_day(today + timedelta(days=within_days), tz)
        return [open_, col(DsrRequest.due_at) >= now, col(DsrRequest.due_at) <= last]
    if bucket == "postponed":
        return [open_, col(DsrRequest.extensions) > 0]
    waiting = sa.select(col(OutboxMessage.request_ref)).where(*awaiting_clauses(now))
    return [col(DsrRequest.id).in_(waiting)]


def _clauses(
    bucket: str, *, now: datetime, tz: str, within_days: int, assignee: str | None
) -> list[Any]:
    clauses = _bucket_clauses(bucket, now=now, tz=tz, within_days=within_days)
    if assignee is not None:
        clauses.append(col(DsrRequest.assignee) == assignee)
    return clauses


async def _bucket(
    session: AsyncSession,
    bucket: str,
    *,
    now: datetime,
    tz: str,
    within_days: int,
    assignee: str | None,
    limit: int,
) -> tuple[int, list[DsrRequest]]:
    clauses = _clauses(bucket, now=now, tz=tz, within_days=within_days, assignee=assignee)
    count = (
        await session.execute(sa.select(sa.func.count()).select_from(DsrRequest).where(*clauses))
    ).scalar_one()
    rows = (
        await session.exec(
            select(DsrRequest)
            .where(*clauses)
            .order_by(col(DsrRequest.due_at), col(DsrRequest.id))
            .limit(limit)
        )
    ).all()
    return int(count), list(rows)


async def sla_overview(
    session: AsyncSession,
    *,
    settings: Settings,
    now: datetime,
    within_days: int,
    assignee: str | None,
    actor: Actor,
) -> dict[str, Any]:
    """Counts and the earliest-due requests of each bucket (optionally one owner's); audited."""
    tz = settings.display_timezone
    counts: dict[str, int] = {}
    lists: dict[str, list[dict[str, Any]]] = {}
    for bucket in BUCKETS:
        count, rows = await _bucket(
            session,
            bucket,
            now=now,
            tz=tz,
            within_days=within_days,
            assignee=assignee,
            limit=LIST_LIMIT,
        )
        counts[bucket] = count
        lists[bucket] = [queue_row(row, now=now, tz=tz) for row in rows]
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="requests.sla_viewed",
        target_type="request",
        client_ip=actor.client_ip,
        details={"within_days": within_days, "assignee": assignee, "counts": counts},
    )
    return {"within_days": within_days, "counts": counts, **lists}


# -------------------------------------------------------------------------------- the digest


def _line(request: DsrRequest, *, now: datetime, tz: str, locale: str) -> dict[str, Any]:
    return {
        "ref": reference(request.id),
        "type_label": TYPE_LABELS[request.type][locale],
        "due_date": deadlines.local_day_text(request.due_at, tz),
        "days_left": deadlines.days_left(request.due_at, now=now, tz=tz),
        "assignee": request.assignee or "-",
    }


def staff_address(settings: Settings, user: str) -> str | None:
    template = settings.staff_email_template
    return template.replace("{sub}", user) if template and "{sub}" in template else None


async def _digest_for(
    session: AsyncSession,
    ctx: WorkerContext,
    *,
    now: datetime,
    destination: str | None,
    recipient: str,
    assignee: str | None,
) -> bool:
    settings = ctx.settings
    tz, locale = settings.display_timezone, settings.default_locale
    within = settings.sla_digest_within_days
    overdue = await _bucket(
        session, "overdue", now=now, tz=tz, within_days=within, assignee=assignee, limit=100
    )
    soon = await _bucket(
        session, "due_soon", now=now, tz=tz, within_days=within, assignee=assignee, limit=100
    )
    if overdue[0] == 0 and soon[0] == 0:
        return False  # nothing due soon or overdue: no mail
    if destination is None:
        # Said only when a digest is missed: a console with nothing due stays quiet (dev).
        logger.warning(
            "no privacy officer address for the digest", extra={"event": "sla.digest_unaddressed"}
        )
        return False
    day = deadlines.local_day_text(now, tz)
    queued = await messages.queue_notice(
        session,
        crypto=ctx.crypto,
        now=now,
        channel="email",
        destination=destination,
        template="sla_digest",
        variables={
            "date": day,
            "within_days": within,
            "overdue_count": overdue[0],
            "soon_count": soon[0],
            "overdue": [_line(row, now=now, tz=tz, locale=locale) for row in overdue[1]],
            "soon": [_line(row, now=now, tz=tz, locale=locale) for row in soon[1]],
            "mine": assignee is not None,
        },
        locale=locale,
        dedupe_key=f"sla-digest:{day}:{recipient}",
    )
    return queued is not None


async def send_daily_digest(ctx: WorkerContext) -> int:
    """Periodic: once per local day (from the digest hour), one e-mail to the officer and one to
    each owner, each only when something is due soon or overdue; returns how many were queued."""
    now = ctx.clock.now()
    settings = ctx.settings
    if deadlines.in_zone(now, settings.display_timezone).hour < settings.sla_digest_hour:  # type: ignore[union-attr]
        return 0
    sent = 0
    async with ctx.db.transaction() as session:
        sent += await _digest_for(
            session,
            ctx,
            now=now,
            destination=settings.privacy_officer_email or None,
            recipient="privacy-officer",
            assignee=None,
        )
        owners = (
            await session.execute(
                sa.select(col(DsrRequest.assignee))
                .where(
                    col(DsrRequest.assignee).is_not(None),
                    col(DsrRequest.status).in_(OPEN_STATUSES),
                )
                .distinct()
            )
        ).scalars()
        for owner in list(owners):
            address = staff_address(settings, owner)
            if address is None:
                continue
            sent += await _digest_for(
                session,
                ctx,
                now=now,
                destination=address,
                recipient=f"staff:{owner}",
                assignee=owner,
            )
    return sent


DIGEST_JOB = PeriodicJob(
    name="sla.daily-digest", every=timedelta(minutes=10), run=send_daily_digest
)


# -------------------------------------------------------------------------- the overdue alert


async def alert_overdue(ctx: WorkerContext) -> int:
    """Periodic: tell the officer (and the owner) once when a request passes its due date."""
    now = ctx.clock.now()
    settings = ctx.settings
    tz, locale = settings.display_timezone, settings.default_locale
    async with ctx.db.transaction() as session:
        due = (
            await session.exec(
                select(DsrRequest)
                .where(
                    col(DsrRequest.status).in_(OPEN_STATUSES),
                    col(DsrRequest.due_at) < now,
                    sa.or_(
                        col(DsrRequest.overdue_alerted_at).is_(None),
                        col(DsrRequest.overdue_alerted_at) < col(DsrRequest.due_at),
                    ),
                )
                .order_by(col(DsrRequest.due_at))
                .limit(ALERT_BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for request in due:
            destinations = [settings.privacy_officer_email]
            if request.assignee:
                destinations.append(staff_address(settings, request.assignee))
            variables = _line(request, now=now, tz=tz, locale=locale)
            for n, destination in enumerate(d for d in destinations if d):
                await messages.queue_notice(
                    session,
                    crypto=ctx.crypto,
                    now=now,
                    channel="email",
                    destination=destination,
                    template="request_overdue",
                    variables=variables,
                    locale=locale,
                    request_ref=request.id,
                    dedupe_key=f"request-overdue:{request.id}:{request.due_at.isoformat()}:{n}",
                )
            request.overdue_alerted_at = now
            session.add(request)
            await record(
                session,
                crypto=ctx.crypto,
                request=request,
                actor=SYSTEM,
                action="overdue_alerted",
                now=now,
                details={"due_at": request.due_at.isoformat()},
            )
    return len(due)


OVERDUE_JOB = PeriodicJob(name="sla.overdue-alert", every=timedelta(minutes=5), run=alert_overdue)


JOBS = (DIGEST_JOB, OVERDUE_JOB)
