"""The hash-chained audit trail: plain inserts, sealed in order, any later edit is named."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from app.audit import trail
from app.clock import FrozenClock
from app.db import Database
from app.outbox.worker import Worker


async def write_entries(db: Database, clock: FrozenClock, count: int) -> None:
    for n in range(count):
        async with db.transaction() as session:
            await trail.record(
                session,
                now=clock.now(),
                actor=f"staff-{n}",
                role="support_agent",
                action="request.viewed",
                target_type="request",
                target_id=str(n),
                client_ip="127.0.0.1",
                details={"n": n, "note": "열람"},
            )
        clock.advance(timedelta(seconds=1))


async def seal(db: Database) -> int:
    async with db.transaction() as session:
        return await trail.seal_pending(session)


async def test_chain_verifies(db: Database, clock: FrozenClock) -> None:
    await write_entries(db, clock, 5)
    async with db.sessionmaker() as session:
        assert await trail.count_unsealed(session) == 5
    assert await seal(db) == 5
    assert await seal(db) == 0
    await write_entries(db, clock, 2)
    assert await seal(db) == 2
    async with db.sessionmaker() as session:
        assert await trail.verify_chain(session) == (7, None)
        assert await trail.count_unsealed(session) == 0


async def test_an_entry_altered_in_sql_is_named(db: Database, clock: FrozenClock) -> None:
    await write_entries(db, clock, 5)
    await seal(db)
    async with db.transaction() as session:
        await session.execute(
            sa.text("UPDATE audit_entry SET actor = 'someone-else' WHERE seq = 3")
        )
        target = (
            await session.execute(sa.text("SELECT id FROM audit_entry WHERE seq = 3"))
        ).scalar()
    async with db.sessionmaker() as session:
        _checked, broken = await trail.verify_chain(session)
    assert broken == target


async def test_a_deleted_entry_breaks_the_chain_at_the_next(
    db: Database, clock: FrozenClock
) -> None:
    await write_entries(db, clock, 4)
    await seal(db)
    async with db.transaction() as session:
        after = (
            await session.execute(sa.text("SELECT id FROM audit_entry WHERE seq = 3"))
        ).scalar()
        await session.execute(sa.text("DELETE FROM audit_entry WHERE seq = 2"))
    async with db.sessionmaker() as session:
        assert (await trail.verify_chain(session))[1] == after


async def test_concurrent_writers_never_wait_and_keep_one_chain(
    db: Database, clock: FrozenClock
) -> None:
    async def one(n: int) -> None:
        async with db.transaction() as session:
            await trail.record(session, now=clock.now(), actor="w", role="system", action=f"a{n}")
            await asyncio.sleep(0.01)  # transactions overlap

    await asyncio.gather(*(one(n) for n in range(20)))
    assert await seal(db) == 20
    async with db.sessionmaker() as session:
        assert await trail.verify_chain(session) == (20, None)


async def test_an_entry_committed_late_is_sealed_after_the_others(
    db: Database, clock: FrozenClock
) -> None:
    async with db.sessionmaker() as slow:
        await trail.record(slow, now=clock.now(), actor="slow", role="system", action="late")
        await write_entries(db, clock, 3)  # later ids, committed first
        assert await seal(db) == 3
        await slow.commit()
    assert await seal(db) == 1
    async with db.sessionmaker() as session:
        assert await trail.verify_chain(session) == (4, None)
        late = (
            await session.execute(sa.text("SELECT id, seq FROM audit_entry WHERE actor = 'slow'"))
        ).one()
    assert late.seq == 4 and late.id < 4 + 1


async def test_the_worker_seals_periodically(
    db: Database, clock: FrozenClock, worker: Worker
) -> None:
    await write_entries(db, clock, 3)
    await worker.run_periodic()
    async with db.sessionmaker() as session:
        assert await trail.count_unsealed(session) == 0
        assert await trail.verify_chain(session) == (3, None)
