"""Periodic jobs run once per interval, however many workers run.

Each job's time is cut into slots of its interval, starting at its first run ever; a worker
runs a job only after inserting the row (job, slot) of the current slot, which the primary key
lets one worker of N do (``INSERT … ON CONFLICT DO NOTHING``). Slots follow the first run
rather than the epoch, so "daily" means 24 hours after the last run, not midnight UTC.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import PeriodicRun

# Slots of a job kept for the record; older rows are deleted when a new slot is claimed.
HISTORY_SLOTS = 100


def current_slot(latest: datetime | None, *, now: datetime, every: timedelta) -> datetime:
    """The start of the interval ``now`` falls in, on the grid of the job's latest slot."""
    if latest is None:
        return now
    return latest + every * max(0, (now - latest) // every)  # a clock set back: same slot


async def claim_slot(
    session: AsyncSession, *, job: str, every: timedelta, now: datetime
) -> tuple[datetime, bool]:
    """Claim this job's current slot in the caller's transaction: (slot, claimed by us)."""
    # Serialises workers computing a job's slot, so two first runs cannot pick two grids.
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(zlib.crc32(job.encode()))))
    latest = (
        await session.execute(
            sa.select(sa.func.max(col(PeriodicRun.slot))).where(col(PeriodicRun.job) == job)
        )
    ).scalar_one_or_none()
    slot = current_slot(latest, now=now, every=every)
    claimed = (
        await session.execute(
            insert(PeriodicRun)
            .values(job=job, slot=slot, started_at=now)
            .on_conflict_do_nothing(index_elements=["job", "slot"])
            .returning(col(PeriodicRun.slot))
        )
    ).scalar_one_or_none()
    if claimed is not None:
        await session.execute(
            sa.delete(PeriodicRun).where(
                col(PeriodicRun.job) == job, col(PeriodicRun.slot) < slot - every * HISTORY_SLOTS
            )
        )
    return slot, claimed is not None


async def finish_slot(
    session: AsyncSession,
    *,
    job: str,
    slot: datetime,
    now: datetime,
    count: int | None,
    error: str | None = None,
) -> None:
    """Record how a claimed run ended (a failed run waits for the next slot)."""
    await session.execute(
        sa.update(PeriodicRun)
        .where(col(PeriodicRun.job) == job, col(PeriodicRun.slot) == slot)
        .values(finished_at=now, count=count, error=error[:200] if error else None)
    )
