"""The pool after the server drops its connections: no ping per checkout, no failed request."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from app.db import Database, plain_url
from tests.support.lifecycle import make_subject, staff


async def _terminate_pool_connections(url: str) -> int:
    """pg_terminate_backend every other connection to this database, as a restart would."""
    admin = await asyncpg.connect(plain_url(url))
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # the event loop reads each connection's end
    return int(killed)


async def _warm(db: Database, connections: int) -> None:
    async def hold() -> None:
        async with db.transaction() as session:
            await session.execute(sa.text("SELECT pg_sleep(0.05)"))

    await asyncio.gather(*(hold() for _ in range(connections)))


async def test_a_unit_of_work_succeeds_after_its_pooled_connections_were_terminated(
    database_url: str,
) -> None:
    db = Database.connect(database_url, pool_size=3)
    try:
        await _warm(db, 3)
        assert await _terminate_pool_connections(database_url) >= 3
        for _ in range(5):  # every pooled connection was dead: none is handed out
            async with db.transaction() as session:
                assert (await session.execute(sa.text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()


async def test_requests_succeed_after_the_database_dropped_every_connection(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    subject = await make_subject(app)
    await _warm(app.state.db, 4)
    assert await _terminate_pool_connections(database_url) >= 4
    for _ in range(4):
        mine = await client.get("/v1/requests", headers=subject.headers)
        assert mine.status_code == 200, mine.text
    created = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    assert created.status_code == 201, created.text


async def test_a_usage_check_succeeds_after_the_database_dropped_every_connection(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    await _warm(app.state.db, 4)
    assert await _terminate_pool_connections(database_url) >= 4
    for _ in range(4):
        checked = await client.post(
            "/v1/usage-checks",
            json={"identifiers": {"phone": "010-1234-5678"}, "purpose": "marketing"},
            headers=staff(app, "service", sub="crm"),
        )
        assert checked.status_code == 200, checked.text


# The intake's one statement loses its connection half-way: the backend is terminated from inside.
DROP_MID_STATEMENT = (
    """
    CREATE FUNCTION test_drop_connection() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(1); RETURN NEW; END $$
    """,
    """
    CREATE TRIGGER test_drop_connection AFTER INSERT ON dsr_request
    FOR EACH ROW EXECUTE FUNCTION test_drop_connection()
    """,
)
UNDO_DROP = (
    "DROP TRIGGER IF EXISTS test_drop_connection ON dsr_request",
    "DROP FUNCTION IF EXISTS test_drop_connection()",
)


async def test_a_connection_dropped_mid_intake_answers_503_and_stores_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    db: Database = app.state.db
    async with db.transaction() as session:
        for statement in DROP_MID_STATEMENT:
            await session.execute(sa.text(statement))
    try:
        dropped = await client.post(
            "/v1/requests", json={"type": "access"}, headers=subject.headers
        )
    finally:
        async with db.transaction() as session:
            for statement in UNDO_DROP:
                await session.execute(sa.text(statement))
    assert dropped.status_code == 503, dropped.text
    assert dropped.headers["retry-after"] == "1"
    assert dropped.json()["code"] == "unavailable"
    async with db.transaction() as session:
        stored = (await session.execute(sa.text("SELECT count(*) FROM dsr_request"))).scalar_one()
    assert stored == 0
    retried = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    assert retried.status_code == 201, retried.text


async def test_no_connection_of_the_service_compiles_plans_with_jit(database_url: str) -> None:
    # A queue page at ten million requests spent 270 ms in JIT compilation of a branch that
    # never ran (docs/BENCHMARKS.md): the service's statements are short, so JIT stays off on
    # the unit of work's connections and on the autocommit pool alike.
    db = Database.connect(database_url, pool_size=2)
    try:
        async with db.transaction() as session:
            assert (await session.execute(sa.text("SHOW jit"))).scalar_one() == "off"
        async with db.autocommit() as connection:
            assert await connection.fetchval("SHOW jit") == "off"
    finally:
        await db.dispose()
