"""The record-keeping export: one CSV line per request received in a date range, streamed.

The rows come through a server-side cursor on a connection of their own, a batch at a time,
so a year of requests never sits in memory. No personal data by default; the subject's
identifiers are added only for a privacy officer who asks, and the export is audited either way.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.db import Database
from app.errors import Forbidden, InvalidInput
from app.models import DsrRequest, SubjectIdentifier
from app.requests import deadlines
from app.requests.notices import reference

COLUMNS = (
    "reference",
    "type",
    "channel",
    "received",
    "due",
    "decided",
    "completed",
    "outcome",
    "grounds",
    "days_taken",
    "on_time",
)
PERSONAL_COLUMNS = ("phone", "email")
BATCH = 2000
MAX_DAYS = 731

_R = DsrRequest.__table__  # type: ignore[attr-defined]
_I = SubjectIdentifier.__table__  # type: ignore[attr-defined]


def local_range(day_from: date, day_to: date, tz: str) -> tuple[datetime, datetime]:
    """[start of ``day_from``, end of ``day_to``] in the display zone, as UTC bounds."""
    if day_to < day_from:
        raise InvalidInput("The range ends before it starts.")
    if (day_to - day_from).days > MAX_DAYS:
        raise InvalidInput(f"A range is at most {MAX_DAYS} days.")
    start = deadlines.end_of_local_day(day_from - timedelta(days=1), tz) + timedelta(seconds=1)
    return start, deadlines.end_of_local_day(day_to, tz)


def finished_at(row: Any) -> datetime | None:
    """When the request got its answer: completed, refused (decided) or withdrawn."""
    if row.completed_at is not None:
        return row.completed_at
    if row.status == "refused":
        return row.decided_at
    return row.withdrawn_at


def line(row: Any, *, now: datetime, tz: str) -> list[str]:
    """One request as the export writes it (times in the display zone)."""

    def local(at: datetime | None) -> str:
        zoned = deadlines.in_zone(at, tz)
        return zoned.isoformat(timespec="seconds") if zoned else ""

    end = finished_at(row)
    days = ""
    on_time = ""
    if end is not None:
        days = str((deadlines.local_date(end, tz) - deadlines.local_date(row.received_at, tz)).days)
        if row.status != "withdrawn":
            on_time = "yes" if end <= row.due_at else "no"
    elif now > row.due_at:
        on_time = "no"
    grounds = ";".join(sorted({entry["ground"] for entry in row.refusals or []}))
    return [
        reference(row.id),
        row.type,
        row.intake_channel,
        local(row.received_at),
        local(row.due_at),
        local(row.decided_at),
        local(end if row.status != "refused" else None),
        row.status,
        grounds,
        days,
        on_time,
    ]


def _query(start: datetime, end: datetime, personal: bool) -> Any:
    columns: list[Any] = [
        _R.c.id,
        _R.c.type,
        _R.c.status,
        _R.c.intake_channel,
        _R.c.received_at,
        _R.c.due_at,
        _R.c.decided_at,
        _R.c.completed_at,
        _R.c.withdrawn_at,
        _R.c.refusals,
    ]
    query = sa.select(*columns)
    if personal:
        ids = (
            sa.select(
                sa.func.array_agg(_I.c.kind).label("kinds"),
                sa.func.array_agg(_I.c.blind_index).label("indexes"),
                sa.func.array_agg(_I.c.value_encrypted).label("sealed"),
            )
            .where(_I.c.id == sa.func.any(_R.c.identifier_ids))
            .lateral("ids")
        )
        query = sa.select(*columns, ids.c.kinds, ids.c.indexes, ids.c.sealed).outerjoin(
            ids, sa.true()
        )
    return (
        query.where(_R.c.received_at >= start, _R.c.received_at <= end)
        .order_by(_R.c.received_at, _R.c.id)
        .execution_options(yield_per=BATCH)
    )


def _identifiers(crypto: Crypto, row: Any) -> list[str]:
    found: dict[str, str] = {}
    for kind, index, sealed in zip(
        row.kinds or [], row.indexes or [], row.sealed or [], strict=False
    ):
        found.setdefault(kind, crypto.decrypt_str(sealed, context=f"identifier:{index}"))
    return [found.get(kind, "") for kind in PERSONAL_COLUMNS]


def _csv(rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


async def _stream(
    database: Database,
    *,
    crypto: Crypto,
    start: datetime,
    end: datetime,
    personal: bool,
    now: datetime,
    tz: str,
) -> AsyncIterator[bytes]:
    header = list(COLUMNS) + (list(PERSONAL_COLUMNS) if personal else [])
    yield "\ufeff".encode() + _csv([header])  # the BOM makes spreadsheet programs read UTF-8
    async with database.engine.connect() as conn:
        result = await conn.stream(_query(start, end, personal))
        async for partition in result.partitions(BATCH):
            lines = []
            for row in partition:
                fields = line(row, now=now, tz=tz)
                if personal:
                    fields += _identifiers(crypto, row)
                lines.append(fields)
            yield _csv(lines)
        await conn.rollback()


async def export_requests(
    session: AsyncSession,
    *,
    database: Database,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    day_from: date,
    day_to: date,
    personal: bool,
    actor: Actor,
) -> AsyncIterator[bytes]:
    """Audit the export and return its CSV bytes as a stream (personal data: officer only)."""
    if personal and not actor.is_officer:
        raise Forbidden("Only a privacy officer exports the subjects' identifiers.")
    tz = settings.display_timezone
    start, end = local_range(day_from, day_to, tz)
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="requests.exported",
        target_type="request",
        client_ip=actor.client_ip,
        details={"from": day_from.isoformat(), "to": day_to.isoformat(), "personal": personal},
    )
    return _stream(database, crypto=crypto, start=start, end=end, personal=personal, now=now, tz=tz)
