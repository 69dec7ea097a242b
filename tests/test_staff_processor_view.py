"""The staff view of a request shows which processors were told and which confirmed."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.outbox.worker import Worker
from app.webhooks import notices as processors_notices
from app.webhooks import processors
from tests.support.lifecycle import AGENT, make_subject, new_request, staff
from tests.support.servers import RecordingServer


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhooks": True, "webhook_processor_cache_seconds": 0}


async def test_processor_notices_and_confirmations_in_the_staff_view(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    with RecordingServer() as receiver:
        async with app.state.db.transaction() as session:
            await processors.ensure_processors(
                session,
                crypto=app.state.crypto,
                now=app.state.clock.now(),
                processors=[
                    {"code": "hct", "name": "HCT", "nation": "TW"},
                    {"code": "yamato", "name": "Yamato", "nation": "JP"},
                ],
                webhook_base_url=receiver.url,
            )
            for code in ("hct", "yamato"):
                await processors_notices.queue_processor_notice(
                    session,
                    crypto=app.state.crypto,
                    now=app.state.clock.now(),
                    processor_code=code,
                    event_type="personal_data.corrected",
                    data={"records": [{"tracking_number": f"QX-{code}"}]},
                    request_ref=uuid.UUID(request_id),
                )
        await worker.drain()
        assert len(receiver.requests()) == 2

    detail = await client.get(f"/v1/staff/requests/{request_id}", headers=staff(app, *AGENT))
    assert detail.status_code == 200
    notices = {row["processor"]: row for row in detail.json()["processor_notices"]}
    assert set(notices) == {"hct", "yamato"}
    assert all(row["delivery_status"] == "delivered" for row in notices.values())
    assert all(row["acknowledgement"] is None for row in notices.values())
    assert notices["hct"]["webhook_id"].startswith("msg_")
