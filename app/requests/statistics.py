"""Figures a privacy officer shows an auditor or the PIPC, for requests received in a range.

Days are counted as the deadlines are: whole local days from the day of receipt to the day of
the answer (the receipt day not counted), in the display zone.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.config import Settings
from app.models import DsrObjection, DsrRequest
from app.models.requests import OPEN_STATUSES, STATUSES, TYPES
from app.requests.exports import local_range

_R = DsrRequest.__table__  # type: ignore[attr-defined]
_O = DsrObjection.__table__  # type: ignore[attr-defined]
CHANNELS = ("app", "phone", "counter")
ANSWERED = ("completed", "partially_completed", "refused")


def _local_day(column: Any, tz: str) -> Any:
    return sa.cast(sa.func.timezone(tz, column), sa.Date)


async def _grouped(session: AsyncSession, column: Any, where: list[Any]) -> dict[str, int]:
    rows = await session.execute(sa.select(column, sa.func.count()).where(*where).group_by(column))
    return {key: count for key, count in rows.all()}


async def request_statistics(
    session: AsyncSession,
    *,
    settings: Settings,
    now: datetime,
    day_from: date,
    day_to: date,
    actor: Actor,
) -> dict[str, Any]:
    """Counts by type, channel and outcome; median and p90 days; share on time (of the answered
    and the still open past their due date); objections."""
    tz = settings.display_timezone
    start, end = local_range(day_from, day_to, tz)
    received = [_R.c.received_at >= start, _R.c.received_at <= end]
    by_type = dict.fromkeys(TYPES, 0) | await _grouped(session, _R.c.type, received)
    by_channel = dict.fromkeys(CHANNELS, 0) | await _grouped(session, _R.c.intake_channel, received)
    by_outcome = dict.fromkeys(STATUSES, 0) | await _grouped(session, _R.c.status, received)
    days = _local_day(_R.c.completed_at, tz) - _local_day(_R.c.received_at, tz)
    median, p90, completed = (
        await session.execute(
            sa.select(
                sa.func.percentile_cont(0.5).within_group(days),
                sa.func.percentile_cont(0.9).within_group(days),
                sa.func.count(),
            ).where(*received, _R.c.completed_at.is_not(None))
        )
    ).one()
    answered_at = sa.func.coalesce(_R.c.completed_at, _R.c.decided_at)
    answered, on_time, late_open = (
        await session.execute(
            sa.select(
                sa.func.count().filter(_R.c.status.in_(ANSWERED)),
                sa.func.count().filter(_R.c.status.in_(ANSWERED), answered_at <= _R.c.due_at),
                sa.func.count().filter(_R.c.status.in_(OPEN_STATUSES), _R.c.due_at < now),
            ).where(*received)
        )
    ).one()
    # A request still open past its due date is late already: it counts against the share.
    judged = answered + late_open
    objections = {"open": 0, "upheld": 0, "dismissed": 0} | await _grouped(
        session, _O.c.status, [_O.c.submitted_at >= start, _O.c.submitted_at <= end]
    )
    answer = {
        "from": day_from.isoformat(),
        "to": day_to.isoformat(),
        "total": sum(by_type.values()),
        "by_type": by_type,
        "by_channel": by_channel,
        "by_outcome": by_outcome,
        "completed": int(completed),
        "median_days_to_complete": float(median) if median is not None else None,
        "p90_days_to_complete": float(p90) if p90 is not None else None,
        "answered": int(answered),
        "answered_on_time": int(on_time),
        "overdue_unanswered": int(late_open),
        "share_on_time": round(on_time / judged, 4) if judged else None,
        "objections": {"total": sum(objections.values()), **objections},
    }
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="requests.statistics_viewed",
        target_type="request",
        client_ip=actor.client_ip,
        details={"from": day_from.isoformat(), "to": day_to.isoformat()},
    )
    return answer
