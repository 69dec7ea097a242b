"""Finished outbox messages lose their payloads after a period; the rows stay as the record."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from app.clock import FrozenClock
from app.db import Database
from app.models import OutboxMessage
from app.notifications import messages
from app.outbox import retention
from app.outbox.jobs import Dead, Outcome, WorkerContext
from app.outbox.worker import Worker
from app.worker import build_registry
from tests.support.lifecycle import drive, make_subject, new_request
from tests.support.servers import RecordingServer, Reply
from tests.support.webhooks import message, notify, register


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "outbox_retention_batch_size": 2,  # several batches in one run
        "allow_private_webhooks": True,
    }


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


async def queue_notices(db: Database, worker: Worker, count: int) -> list[uuid.UUID]:
    ids = []
    async with db.transaction() as session:
        for n in range(count):
            message_id = await messages.queue_notice(
                session,
                crypto=worker.ctx.crypto,
                now=worker.ctx.clock.now(),
                channel="sms",
                destination=f"+8210000000{n:02d}",
                template="request_received",
                variables={
                    "type_label": "열람",
                    "ref": f"R-{n}",
                    "received_date": "2026-11-26",
                    "due_date": "2026-12-10",
                    "contact": "02-2620-1100",
                },
            )
            assert message_id is not None
            ids.append(message_id)
    return ids


async def test_delivered_and_dead_payloads_go_after_the_period_metadata_stays(
    db: Database, worker: Worker, gateway: RecordingServer, clock: FrozenClock
) -> None:
    delivered = await queue_notices(db, worker, 5)
    assert await worker.drain() == 5
    [dead] = await queue_notices(db, worker, 1)
    gateway.reply_next(Reply(500))

    async def refuse(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
        return Dead("gateway refused")

    registry = build_registry()
    registry.handlers["notification"] = refuse
    await Worker(worker.ctx, registry).drain()
    assert (await message(db, dead)).status == "dead"
    before = {i: await message(db, i) for i in [*delivered, dead]}

    clock.advance(timedelta(days=3) - timedelta(minutes=1))
    assert await retention.destroy_finished_payloads(worker.ctx) == 0
    assert all([(await message(db, i)).payload is not None for i in before])

    clock.advance(timedelta(minutes=2))
    assert await retention.destroy_finished_payloads(worker.ctx) == 6  # three batches of two
    for message_id, old in before.items():
        row = await message(db, message_id)
        assert row.payload is None and row.payload_destroyed_at == clock.now()
        kept = ("kind", "topic", "target", "status", "attempts", "delivered_at", "last_error")
        assert [getattr(row, f) for f in kept] == [getattr(old, f) for f in kept]
    assert await retention.destroy_finished_payloads(worker.ctx) == 0


async def test_pending_and_held_messages_keep_their_payloads(
    db: Database, worker: Worker, clock: FrozenClock
) -> None:
    [pending] = await queue_notices(db, worker, 1)
    held = await notify(db, worker, code="not-registered")
    assert held is not None and (await message(db, held)).status == "held"
    clock.advance(timedelta(days=30))
    assert await retention.destroy_finished_payloads(worker.ctx) == 0
    assert (await message(db, pending)).payload is not None
    assert (await message(db, held)).payload is not None


async def test_the_one_time_code_is_destroyed_as_soon_as_it_is_sent(
    client: httpx.AsyncClient, db: Database, worker: Worker, gateway: RecordingServer
) -> None:
    response = await client.post(
        "/v1/verifications", json={"channel": "sms", "destination": "010-4821-7395"}
    )
    assert response.status_code == 202
    [queued] = await rows(db)
    assert queued.topic == "verification_code" and queued.payload is not None
    assert await worker.drain() == 1
    code = gateway.requests("/sms")[-1].json()["variables"]["code"]
    [sent] = await rows(db)
    assert sent.status == "delivered" and sent.payload is None  # no period, no periodic job
    assert sent.payload_destroyed_at is not None and sent.delivered_at is not None
    assert len(code) == 6


async def test_the_periodic_job_runs_it_in_the_worker(
    db: Database, worker: Worker, clock: FrozenClock
) -> None:
    [first] = await queue_notices(db, worker, 1)
    await worker.drain()
    clock.advance(timedelta(days=4))
    await worker.run_periodic()
    assert (await message(db, first)).payload is None


async def test_replaying_a_webhook_whose_payload_was_destroyed_is_a_clear_problem(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    await register(client, staff_headers, code="hct", url=receiver.url)
    message_id = await notify(db, worker, code="hct")
    assert message_id is not None
    assert await worker.drain() == 1
    clock.advance(timedelta(days=3, hours=1))
    assert await retention.destroy_finished_payloads(worker.ctx) == 1
    response = await client.post(
        f"/v1/deliveries/{message_id}/replay", headers=staff_headers("privacy_officer")
    )
    assert response.status_code == 410
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "payload-destroyed"
    stored = await message(db, message_id)
    assert stored.status == "delivered" and stored.payload is None
    # The delivery record is still listed.
    listed = await client.get("/v1/processors/hct/deliveries", headers=staff_headers("admin"))
    assert [item["id"] for item in listed.json()["items"]] == [str(message_id)]


async def test_a_dead_fulfilment_job_of_an_open_request_keeps_its_plan(
    app: FastAPI, client: httpx.AsyncClient, db: Database, worker: Worker, clock: FrozenClock
) -> None:
    async def broken(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
        return Dead("source gone")

    registry = build_registry()
    registry.handlers["job:fulfil.correction"] = broken
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    await drive(app, request_id, "in_progress")
    await Worker(worker.ctx, registry).drain(kinds=["job"])
    [job] = [row for row in await rows(db) if row.kind == "job"]
    assert job.status == "dead"
    clock.advance(timedelta(days=10))
    await retention.destroy_finished_payloads(worker.ctx)
    assert (await message(db, job.id)).payload is not None  # an operator's retry needs it


async def rows(db: Database) -> list[OutboxMessage]:
    async with db.sessionmaker() as session:
        return list((await session.exec(select(OutboxMessage))).all())
