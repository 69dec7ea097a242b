"""Processors acknowledge notices, signed with their secret (the standardwebhooks package)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from app.clock import FrozenClock
from app.db import Database
from app.outbox.worker import Worker
from app.webhooks.acknowledgements import processor_confirmations
from app.webhooks.signing import webhook_id
from tests.support.servers import RecordingServer
from tests.support.webhooks import notify, register


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhooks": True, "webhook_processor_cache_seconds": 0}


@pytest.fixture
def receiver() -> Any:
    with RecordingServer() as server:
        yield server


def signed(
    secret: str,
    body: dict[str, Any] | bytes,
    *,
    at: datetime,
    msg_id: str | None = None,
    processor: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """What a partner sends: its own message id, a timestamp, a signature by its secret."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg_id = msg_id or f"ack_{uuid.uuid4().hex}"
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, raw.decode()),
    }
    if processor:
        headers["webhook-processor"] = processor
    return raw, headers


async def setup(
    client: httpx.AsyncClient, staff_headers: Any, db: Database, worker: Worker, url: str
) -> tuple[str, uuid.UUID, uuid.UUID]:
    secret = (await register(client, staff_headers, code="hct", url=url))["secret"]
    ref = uuid.uuid4()
    message_id = await notify(db, worker, code="hct", request_ref=ref)
    assert message_id is not None
    await worker.drain()
    return secret, message_id, ref


async def test_an_acknowledgement_is_recorded_with_who_and_when(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    secret, message_id, ref = await setup(client, staff_headers, db, worker, receiver.url)
    body, headers = signed(
        secret,
        {"webhook_id": webhook_id(message_id), "status": "applied", "note": "주소 수정 완료"},
        at=clock.now(),
    )
    response = await client.post("/v1/partner/acknowledgements", content=body, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "webhook_id": webhook_id(message_id),
        "processor": "hct",
        "status": "applied",
        "received_at": "2026-11-26T01:00:00Z",
        "duplicate": False,
    }
    # The same acknowledgement again (a partner's retry): recorded once.
    again = await client.post("/v1/partner/acknowledgements", content=body, headers=headers)
    assert again.status_code == 201 and again.json()["duplicate"] is True

    async with db.sessionmaker() as session:
        [confirmation] = await processor_confirmations(session, request_ref=ref)
    assert confirmation.processor == "hct" and confirmation.processor_name == "HCT"
    assert confirmation.webhook_id == webhook_id(message_id)
    assert confirmation.delivery_status == "delivered"
    assert confirmation.acknowledgement == "applied"
    assert confirmation.acknowledged_at == clock.now()

    detail = (
        await client.get(f"/v1/deliveries/{message_id}", headers=staff_headers("privacy_officer"))
    ).json()
    assert detail["acknowledgement"]["status"] == "applied"
    assert detail["acknowledgement"]["note"] == "주소 수정 완료"


async def test_the_processor_header_and_a_later_rejection(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    secret, message_id, ref = await setup(client, staff_headers, db, worker, receiver.url)
    for status in ("applied", "rejected"):
        clock.advance(timedelta(minutes=1))
        body, headers = signed(
            secret,
            {"webhook_id": webhook_id(message_id), "status": status},
            at=clock.now(),
            processor="hct",
        )
        response = await client.post("/v1/partner/acknowledgements", content=body, headers=headers)
        assert response.status_code == 201
    async with db.sessionmaker() as session:
        [confirmation] = await processor_confirmations(session, request_ref=ref)
    assert confirmation.acknowledgement == "rejected"


async def test_bad_signatures_and_unknown_senders_are_refused(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    secret, message_id, _ = await setup(client, staff_headers, db, worker, receiver.url)
    ack = {"webhook_id": webhook_id(message_id), "status": "applied"}
    url = "/v1/partner/acknowledgements"

    wrong = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    body, headers = signed(wrong, ack, at=clock.now())
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 401 and response.json()["code"] == "signature-invalid"

    body, headers = signed(secret, ack, at=clock.now())  # tampered after signing
    tampered = body.replace(b"applied", b"rejected")
    response = await client.post(url, content=tampered, headers=headers)
    assert response.status_code == 401

    body, headers = signed(secret, ack, at=clock.now() - timedelta(minutes=6))  # too old
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 401

    body, headers = signed(secret, ack, at=clock.now())
    del headers["webhook-signature"]
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 401

    unknown = {"webhook_id": f"msg_{uuid.uuid4().hex}", "status": "applied"}
    body, headers = signed(secret, unknown, at=clock.now())
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 401  # no processor can be identified: no probing

    body, headers = signed(secret, unknown, at=clock.now(), processor="hct")
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 404  # authenticated, but not a notice it received

    body, headers = signed(secret, ack, at=clock.now(), processor="nobody")
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 401

    body, headers = signed(secret, b"not json", at=clock.now())
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 401

    bad = {"webhook_id": webhook_id(message_id), "status": "done"}
    body, headers = signed(secret, bad, at=clock.now(), processor="hct")
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 422 and response.json()["code"] == "invalid-input"


async def test_a_processor_cannot_acknowledge_another_processors_notice(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    _, message_id, _ = await setup(client, staff_headers, db, worker, receiver.url)
    other = (await register(client, staff_headers, code="yamato", url=receiver.url))["secret"]
    ack = {"webhook_id": webhook_id(message_id), "status": "applied"}
    body, headers = signed(other, ack, at=clock.now(), processor="yamato")
    response = await client.post("/v1/partner/acknowledgements", content=body, headers=headers)
    assert response.status_code == 404
    body, headers = signed(other, ack, at=clock.now())  # identified as hct by the notice
    response = await client.post("/v1/partner/acknowledgements", content=body, headers=headers)
    assert response.status_code == 401


async def test_the_previous_secret_signs_during_the_grace_period(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    old, message_id, _ = await setup(client, staff_headers, db, worker, receiver.url)
    response = await client.post(
        "/v1/processors/hct/rotate-secret", headers=staff_headers("privacy_officer")
    )
    new = response.json()["secret"]
    url = "/v1/partner/acknowledgements"
    ack = {"webhook_id": webhook_id(message_id), "status": "applied"}
    for secret in (old, new):
        body, headers = signed(secret, ack, at=clock.now())
        assert (await client.post(url, content=body, headers=headers)).status_code == 201
    clock.advance(timedelta(hours=25))
    body, headers = signed(old, ack, at=clock.now())
    assert (await client.post(url, content=body, headers=headers)).status_code == 401
    body, headers = signed(new, ack, at=clock.now())
    assert (await client.post(url, content=body, headers=headers)).status_code == 201


async def test_unacknowledged_notices_are_listed_for_follow_up(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    secret, first, _ = await setup(client, staff_headers, db, worker, receiver.url)
    second = await notify(db, worker, code="hct")
    await worker.drain()
    body, headers = signed(
        secret, {"webhook_id": webhook_id(first), "status": "applied"}, at=clock.now()
    )
    await client.post("/v1/partner/acknowledgements", content=body, headers=headers)
    headers = staff_headers("privacy_officer")
    url = "/v1/deliveries/awaiting-acknowledgement"
    assert (await client.get(url, headers=headers)).json() == []  # not overdue yet (3 days)
    clock.advance(timedelta(days=3, minutes=1))
    headers = staff_headers("privacy_officer")  # a fresh token at the new time
    overdue = (await client.get(url, headers=headers)).json()
    assert [item["id"] for item in overdue] == [str(second)]
    assert (await client.get(f"{url}?older_than_days=4", headers=headers)).json() == []
    assert (await client.get(f"{url}?processor=yamato", headers=headers)).json() == []
    counts = (await client.get("/v1/processors/hct", headers=headers)).json()["deliveries"]
    assert counts["awaiting_acknowledgement"] == 1 and counts["delivered"] == 2
    assert (await client.get(f"{url}?older_than_days=-1", headers=headers)).status_code == 422
