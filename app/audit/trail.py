"""Write, seal and verify the hash-chained audit trail.

Writing is a plain INSERT in the caller's transaction, so audited requests never queue behind
one another. The sealer (the worker, every few seconds, and `dsr audit verify`) takes committed
entries that have no place in the chain yet, in id order, and chains them: ``seq`` is the
position, ``hash`` covers the entry and the previous entry's hash. An entry committed late (a
lower id than one already sealed) simply gets the next ``seq``. Once sealed, changing or deleting
an entry breaks the chain at that entry (or the next).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.actors import ClientAddress
from app.models import AuditEntry
from app.outbox.jobs import PeriodicJob, WorkerContext

GENESIS = "0" * 64
# Only sealers take this lock; writers never wait for it.
_SEAL_LOCK = 0x_A0D17


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def _fields(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "client_ip": entry.client_ip,
        "details": entry.details,
    } | (
        # Only when present, so entries sealed before the column existed still verify.
        {"client_ip_encrypted": entry.client_ip_encrypted.hex()}
        if entry.client_ip_encrypted is not None
        else {}
    )


def entry_values(
    *,
    now: datetime,
    actor: str,
    role: str,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    client_ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns of one entry; ``details`` as JSON text, so the hash later covers exactly what
    JSONB stores (the sealer hashes what it reads back).

    ``client_ip`` is kept only as the forms a ``ClientAddress`` carries: its keyed hash, and
    for staff, partners and services its sealed form (a plain string is not kept at all).
    """
    address = client_ip if isinstance(client_ip, ClientAddress) else None
    return {
        "at": now,
        "actor": actor,
        "role": role,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "client_ip": address.hmac if address is not None else None,
        "client_ip_encrypted": address.sealed
        if address is not None and role != "subject"
        else None,
        "details": json.dumps(details or {}, default=str, ensure_ascii=False),
    }


async def record(
    session: AsyncSession,
    *,
    now: datetime,
    actor: str,
    role: str,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    client_ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry in the caller's transaction; the sealer chains it after commit."""
    values = entry_values(
        now=now,
        actor=actor,
        role=role,
        action=action,
        target_type=target_type,
        target_id=target_id,
        client_ip=client_ip,
        details=details,
    )
    values["details"] = json.loads(values["details"])  # the column's type writes it as JSONB
    # A Core INSERT: no ORM bookkeeping, and pending ORM rows are flushed first (in order).
    await session.execute(sa.insert(AuditEntry.__table__).values(**values))  # type: ignore[attr-defined]


async def seal_pending(session: AsyncSession, *, batch: int = 5000) -> int:
    """Chain committed entries that are not sealed yet (one sealer at a time); returns how many."""
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(_SEAL_LOCK)))
    last = (
        await session.exec(
            select(AuditEntry.seq, AuditEntry.hash)
            .where(col(AuditEntry.seq).is_not(None))
            .order_by(col(AuditEntry.seq).desc())
            .limit(1)
        )
    ).first()
    seq = last[0] if last and last[0] is not None else 0
    prev_hash = last[1] if last and last[1] else GENESIS
    pending = (
        await session.exec(
            select(AuditEntry)
            .where(col(AuditEntry.seq).is_(None))
            .order_by(col(AuditEntry.id))
            .limit(batch)
        )
    ).all()
    for entry in pending:
        seq += 1
        entry.seq = seq
        entry.prev_hash = prev_hash
        entry.hash = entry_hash(prev_hash, _fields(entry))
        prev_hash = entry.hash
        session.add(entry)
    await session.flush()
    return len(pending)


async def _sealed(session: AsyncSession, batch: int = 1000) -> AsyncIterator[AuditEntry]:
    after = 0
    while True:
        rows = (
            await session.exec(
                select(AuditEntry)
                .where(col(AuditEntry.seq) > after)
                .order_by(col(AuditEntry.seq))
                .limit(batch)
            )
        ).all()
        if not rows:
            return
        for row in rows:
            yield row
        after = rows[-1].seq or after


async def verify_chain(session: AsyncSession) -> tuple[int, int | None]:
    """Walk the sealed chain; returns (entries checked, id of the first entry that does not match).

    A deleted entry shows as a gap in ``seq`` and is reported at the entry after it.
    """
    prev_hash = GENESIS
    expected_seq = 1
    checked = 0
    async for entry in _sealed(session):
        checked += 1
        if (
            entry.seq != expected_seq
            or entry.prev_hash != prev_hash
            or entry_hash(prev_hash, _fields(entry)) != entry.hash
        ):
            return checked, entry.id
        prev_hash = entry.hash or ""
        expected_seq += 1
    return checked, None


async def count_unsealed(session: AsyncSession) -> int:
    return int(
        (
            await session.execute(
                sa.select(sa.func.count())
                .select_from(AuditEntry)
                .where(col(AuditEntry.seq).is_(None))
            )
        ).scalar_one()
    )


async def seal_job(ctx: WorkerContext) -> int:
    """Periodic job: seal what was written since the last run."""
    total = 0
    while True:
        async with ctx.db.transaction() as session:
            sealed = await seal_pending(session)
        total += sealed
        if sealed == 0:
            return total


SEAL_JOB = PeriodicJob(name="audit.seal", every=timedelta(seconds=2), run=seal_job)
