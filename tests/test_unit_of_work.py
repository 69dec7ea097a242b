"""The unit of work of an API call: committed before the answer is sent, or a 503 and nothing.

Run through a real uvicorn server on 127.0.0.1 where the order matters: the in-process ASGI
transport only hands the client the answer after the whole app has returned, so it cannot see
an answer that goes out before the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from app.audit import trail
from app.db import Database
from tests.support.lifecycle import AGENT, CORRECTION, make_subject, staff, submit


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhooks": True}


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app (lifespan already entered by the fixture) behind uvicorn on a free port."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_a_201_is_readable_at_once_on_another_connection(app: FastAPI, served: str) -> None:
    agent = staff(app, *AGENT, sub="agent-9")
    one = httpx.Limits(max_connections=1)
    writer = httpx.AsyncClient(base_url=served, headers=agent, limits=one)
    reader = httpx.AsyncClient(base_url=served, headers=agent, limits=one)
    missing = []
    async with writer, reader:
        for n in range(200):
            created = await writer.post(
                "/v1/staff/requests",
                json={
                    "request": {"type": "deletion", "categories": ["identity"]},
                    "identifiers": {"phone": f"010-5{n:03d}-{n:04d}"},
                    "intake_channel": "phone",
                    "verification": {"method": "agent", "check": "callback_to_number_on_record"},
                },
            )
            assert created.status_code == 201, created.text
            read = await reader.get(f"/v1/staff/requests/{created.json()['id']}")
            if read.status_code != 200:
                missing.append((n, read.status_code))
    assert missing == []


# A deadlock found as the transaction ends: the deferred trigger fires at COMMIT (or, on the
# intake's autocommit connection, as its one statement ends).
FAIL_AT_COMMIT = (
    """
    CREATE FUNCTION test_refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'commit refused by the test' USING ERRCODE = 'deadlock_detected'; END $$
    """,
    """
    CREATE CONSTRAINT TRIGGER test_refuse_commit AFTER INSERT ON dsr_request
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse_commit()
    """,
)
ALLOW_COMMIT = (
    "DROP TRIGGER IF EXISTS test_refuse_commit ON dsr_request",
    "DROP FUNCTION IF EXISTS test_refuse_commit()",
)


async def _run(db: Database, statements: tuple[str, ...]) -> None:
    async with db.transaction() as session:
        for statement in statements:
            await session.execute(sa.text(statement))


async def _count(db: Database, table: str) -> int:
    async with db.sessionmaker() as session:
        return int((await session.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def test_a_failing_commit_answers_503_and_stores_nothing(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    subject = await make_subject(app)
    key: dict[str, Any] = {"Idempotency-Key": "commit-1"}
    await _run(db, FAIL_AT_COMMIT)  # the deferred check runs at COMMIT, after the handler
    try:
        response = await submit(client, subject, CORRECTION, **key)
    finally:
        await _run(db, ALLOW_COMMIT)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.json()["code"] == "commit-failed"
    assert "commit refused" not in response.text  # the database's message stays inside
    for table in ("dsr_request", "idempotency_record", "outbox_message", "audit_entry"):
        assert await _count(db, table) == 0, table

    # The retry with the same key is safe: one request, answered 201 once.
    retried = await submit(client, subject, CORRECTION, **key)
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
    again = await submit(client, subject, CORRECTION, **key)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == retried.json()["id"]
    assert await _count(db, "dsr_request") == 1


async def test_a_refused_change_is_rolled_back_before_the_answer(
    app: FastAPI, served: str, db: Database
) -> None:
    """A domain error still answers its own problem and keeps nothing (no 503)."""
    subject = await make_subject(app)
    async with httpx.AsyncClient(base_url=served, headers=subject.headers) as http:
        first = await http.post("/v1/requests", json=CORRECTION)
        duplicate = await http.post("/v1/requests", json=CORRECTION)
    assert first.status_code == 201 and duplicate.status_code == 409
    assert duplicate.json()["code"] == "duplicate-request"
    assert await _count(db, "dsr_request") == 1


async def test_one_actor_id_for_processor_changes_and_request_decisions(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    alice = staff(app, "admin", sub="alice")
    registered = await client.post(
        "/v1/processors",
        json={
            "code": "hct",
            "name": "HCT",
            "nation": "TW",
            "webhook_url": "http://127.0.0.1:9/hct",
        },
        headers=alice,
    )
    assert registered.status_code == 201, registered.text
    subject = await make_subject(app)
    request_id = (await submit(client, subject, CORRECTION)).json()["id"]
    reviewed = await client.post(f"/v1/staff/requests/{request_id}/review", headers=alice)
    assert reviewed.status_code == 200, reviewed.text
    approved = await client.post(f"/v1/staff/requests/{request_id}/approve", json={}, headers=alice)
    assert approved.status_code == 200, approved.text
    # A row written before one convention: the bare sub (sealed in the chain, not rewritten).
    async with db.transaction() as session:
        clock = app.state.clock
        for action in ("processor.secret_rotated", "request.viewed"):
            await trail.record(session, now=clock.now(), actor="alice", role="admin", action=action)

    officer = staff(app, "privacy_officer", sub="officer-2")
    page = await client.get("/v1/audit", params={"actor": "staff:alice"}, headers=officer)
    assert page.status_code == 200, page.text
    entries = page.json()["items"]
    actions = {entry["action"] for entry in entries}
    assert {
        "processor.registered",
        "request.start_review",
        "request.approve",
        "processor.secret_rotated",
    } <= actions
    assert "request.viewed" not in actions  # a bare id outside the old processor entries
    assert all(
        (entry["actor"], entry["role"]) == ("staff:alice", "admin")
        for entry in entries
        if entry["action"] != "processor.secret_rotated"
    )
