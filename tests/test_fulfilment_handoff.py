"""The hand-off to fulfilment: the job, the functions handlers call, failure and retry."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.db import Database
from app.errors import InvalidInput
from app.models import OutboxMessage
from app.outbox.jobs import Outcome, Registry, Sent, WorkerContext
from app.outbox.worker import Worker
from app.requests import completion, lifecycle
from app.worker import build_registry
from tests.support.lifecycle import AGENT, OFFICER, drive, make_subject, new_request, staff


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"auto_approve_access": True}


async def test_a_fulfilment_handler_completes_the_request(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker
) -> None:
    seen: list[dict[str, Any]] = []

    async def fulfil_correction(
        message: OutboxMessage, payload: Any, ctx: WorkerContext
    ) -> Outcome:
        request_id = uuid.UUID(payload["request_id"])
        async with ctx.db.transaction() as session:
            seen.append(
                await lifecycle.load_request_body(session, crypto=ctx.crypto, request_id=request_id)
            )
            await completion.complete_request(
                session,
                crypto=ctx.crypto,
                settings=ctx.settings,
                now=ctx.clock.now(),
                request_id=request_id,
                outcome="completed",
                result={"records_corrected": 3, "processors_notified": ["HCT"]},
            )
        return Sent()

    registry = build_registry()
    registry.handlers["job:fulfil.correction"] = fulfil_correction
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    await drive(app, request_id, "in_progress")
    await Worker(worker.ctx, registry).drain()

    assert seen[0]["corrections"][0]["item"] == "address"
    mine = (await client.get(f"/v1/requests/{request_id}", headers=subject.headers)).json()
    assert mine["status"] == "completed" and mine["completed_at"] is not None
    detail = (
        await client.get(f"/v1/staff/requests/{request_id}", headers=staff(app, *OFFICER))
    ).json()
    assert detail["result"] == {"records_corrected": 3, "processors_notified": ["HCT"]}
    assert detail["fulfilment"] == {"state": "done", "attempts": 1, "error": None}


async def test_partial_completion_records_grounds_from_the_fulfilment(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "deletion")
    await drive(app, request_id, "in_progress")

    async def complete(**kwargs: Any) -> str:
        async with app.state.db.transaction() as session:
            request = await completion.complete_request(
                session,
                crypto=app.state.crypto,
                settings=app.state.settings,
                now=app.state.clock.now(),
                request_id=uuid.UUID(request_id),
                result={"deleted": 4, "retained": 1},
                **kwargs,
            )
            return request.status

    with pytest.raises(InvalidInput):
        await complete(outcome="partially_completed")
    with pytest.raises(InvalidInput):
        await complete(outcome="completed", refused_items=[{"item": "email", "ground": "nope"}])
    status = await complete(
        outcome="partially_completed",
        refused_items=[{"item": "email", "ground": "pipa_36_1_proviso"}],
    )
    assert status == "partially_completed"
    mine = (await client.get(f"/v1/requests/{request_id}", headers=subject.headers)).json()
    assert mine["fulfilment_refusals"][0]["ground"] == "pipa_36_1_proviso"
    assert mine["fulfilment_refusals"][0]["stage"] == "fulfilment"
    assert mine["objection_until"] is not None


async def test_a_dead_fulfilment_job_is_marked_failed_and_can_be_retried(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, db: Database
) -> None:
    subject = await make_subject(app)
    created = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    request_id = created.json()["id"]
    assert created.json()["status"] == "received"  # OTP access: the worker approves it
    # A worker that cannot fulfil access requests (no handler): the job goes dead at once.
    worker.registry.handlers.pop("job:fulfil.access")
    await worker.drain()
    officer = staff(app, *OFFICER)
    failed = await client.get("/v1/staff/requests?fulfilment=failed", headers=officer)
    assert [row["id"] for row in failed.json()["items"]] == [request_id]
    assert failed.json()["counts"]["fulfilment_failed"] == 1
    detail = (await client.get(f"/v1/staff/requests/{request_id}", headers=officer)).json()
    assert detail["status"] == "in_progress"
    assert detail["fulfilment"]["state"] == "failed"
    assert "no handler" in detail["fulfilment"]["error"]

    agent_retry = await client.post(
        f"/v1/staff/requests/{request_id}/retry-fulfilment", headers=staff(app, *AGENT)
    )
    assert agent_retry.status_code == 403
    retried = await client.post(
        f"/v1/staff/requests/{request_id}/retry-fulfilment", headers=staff(app, "admin")
    )
    assert retried.status_code == 200 and retried.json()["fulfilment_state"] == "queued"
    again = await client.post(f"/v1/staff/requests/{request_id}/retry-fulfilment", headers=officer)
    assert again.status_code == 409
    async with db.sessionmaker() as session:
        jobs = (
            (
                await session.execute(
                    sa.text(
                        "SELECT status FROM outbox_message WHERE kind = 'job'"
                        " AND topic LIKE 'fulfil.%' ORDER BY created_at"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert sorted(jobs) == ["dead", "pending"]


async def test_other_dead_jobs_are_left_alone(app: FastAPI, worker: Worker, db: Database) -> None:
    from app.outbox import queue

    async with db.transaction() as session:
        await queue.enqueue(
            session,
            crypto=app.state.crypto,
            now=app.state.clock.now(),
            kind="job",
            topic="something.else",
            payload={},
            request_ref=uuid.uuid4(),
        )
    assert await Worker(worker.ctx, Registry(on_dead=build_registry().on_dead)).drain() == 1


async def test_fail_fulfilment_ignores_requests_no_longer_in_progress(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "deletion")
    await drive(app, request_id, "completed")
    async with app.state.db.transaction() as session:
        request = await completion.fail_fulfilment(
            session,
            crypto=app.state.crypto,
            now=app.state.clock.now(),
            request_id=uuid.UUID(request_id),
            error="late failure",
        )
    assert request.status == "completed" and request.fulfilment_state == "done"
