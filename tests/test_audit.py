"""The hash-chained audit trail."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from app.clock import FrozenClock
from app.db import Database
from app.services import audit


async def write_entries(db: Database, clock: FrozenClock, count: int) -> None:
    for n in range(count):
        async with db.transaction() as session:
            await audit.record(
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


async def test_chain_verifies(db: Database, clock: FrozenClock) -> None:
    await write_entries(db, clock, 5)
    async with db.sessionmaker() as session:
        assert await audit.verify_chain(session) == (5, None)


async def test_an_entry_altered_in_sql_is_named(db: Database, clock: FrozenClock) -> None:
    await write_entries(db, clock, 5)
    async with db.transaction() as session:
        await session.execute(sa.text("UPDATE audit_entry SET actor = 'someone-else' WHERE id = 3"))
    async with db.sessionmaker() as session:
        _checked, broken = await audit.verify_chain(session)
    assert broken == 3


async def test_a_deleted_entry_breaks_the_chain_at_the_next(
    db: Database, clock: FrozenClock
) -> None:
    await write_entries(db, clock, 4)
    async with db.transaction() as session:
        await session.execute(sa.text("DELETE FROM audit_entry WHERE id = 2"))
    async with db.sessionmaker() as session:
        assert (await audit.verify_chain(session))[1] == 3


async def test_concurrent_writers_keep_one_chain(db: Database, clock: FrozenClock) -> None:
    import asyncio

    async def one(n: int) -> None:
        async with db.transaction() as session:
            await audit.record(session, now=clock.now(), actor="w", role="system", action=f"a{n}")

    await asyncio.gather(*(one(n) for n in range(20)))
    async with db.sessionmaker() as session:
        assert await audit.verify_chain(session) == (20, None)
