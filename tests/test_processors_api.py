"""The processors registry and deliveries API: roles, failure paths, filters, audit."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from app.clock import FrozenClock
from app.db import Database
from app.models import AuditEntry, OutboxMessage, Processor
from app.outbox.worker import Worker
from app.security import TokenService
from app.webhooks.signing import webhook_id
from tests.support.servers import RecordingServer, Reply
from tests.support.webhooks import notify, register

SOME_ID = "00000000-0000-4000-8000-000000000001"
ENDPOINTS = [
    (
        "POST",
        "/v1/processors",
        {"code": "x1", "name": "X", "nation": "KR", "webhook_url": "http://a"},
    ),
    ("GET", "/v1/processors", None),
    ("GET", "/v1/processors/hct", None),
    ("PATCH", "/v1/processors/hct", {"name": "HCT"}),
    ("POST", "/v1/processors/hct/rotate-secret", None),
    ("GET", "/v1/processors/hct/deliveries", None),
    ("POST", "/v1/processors/hct/deliveries/replay", None),
    ("GET", "/v1/deliveries", None),
    ("GET", "/v1/deliveries/awaiting-acknowledgement", None),
    ("GET", f"/v1/deliveries/{SOME_ID}", None),
    ("POST", f"/v1/deliveries/{SOME_ID}/replay", None),
]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhooks": True, "webhook_processor_cache_seconds": 0}


@pytest.fixture
def receiver() -> Any:
    with RecordingServer() as server:
        yield server


def subject_headers(tokens: TokenService, clock: FrozenClock) -> dict[str, str]:
    token = tokens.issue_subject_token(
        blind_index="b" * 64, identifier_kinds=["phone"], now=clock.now(), ttl=timedelta(hours=1)
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_every_endpoint_refuses_callers_who_are_not_officers(
    client: httpx.AsyncClient,
    staff_headers: Any,
    tokens: TokenService,
    clock: FrozenClock,
    method: str,
    path: str,
    body: Any,
) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    callers = [
        subject_headers(tokens, clock),
        staff_headers("support_agent"),
        staff_headers("service", sub="svc-billing"),
    ]
    for headers in callers:
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (path, headers)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize("role", ["privacy_officer", "admin"])
async def test_officers_register_list_read_and_change_processors(
    client: httpx.AsyncClient, staff_headers: Any, db: Database, role: str, receiver: Any
) -> None:
    headers = staff_headers(role, sub="officer-7")
    response = await client.post(
        "/v1/processors",
        json={
            "code": "hct",
            "name": "HCT",
            "nation": "TW",
            "contact": "privacy@hct.example",
            "webhook_url": f"{receiver.url}/in",
            "events": ["personal_data.corrected", "personal_data.deleted"],
        },
        headers=headers,
    )
    assert response.status_code == 201
    created = response.json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) == 6 + 44
    assert created["state"] == "active"
    assert created["events"] == ["personal_data.corrected", "personal_data.deleted"]

    listed = (await client.get("/v1/processors", headers=headers)).json()
    assert [item["code"] for item in listed] == ["hct"]
    assert "secret" not in listed[0]
    one = (await client.get("/v1/processors/hct", headers=headers)).json()
    assert "secret" not in one
    assert one["deliveries"] == {
        "pending": 0,
        "held": 0,
        "dead": 0,
        "delivered": 0,
        "awaiting_acknowledgement": 0,
    }

    response = await client.patch(
        "/v1/processors/hct",
        json={"name": "HCT Logistics", "events": ["processing.suspended"]},
        headers=headers,
    )
    assert response.status_code == 200
    assert response.json()["name"] == "HCT Logistics"
    assert response.json()["events"] == ["processing.suspended"]

    async with db.sessionmaker() as session:
        stored = (await session.exec(select(Processor).where(Processor.code == "hct"))).one()
        entries = (await session.exec(select(AuditEntry).order_by(sa.column("id")))).all()
    assert created["secret"].encode() not in stored.secret_encrypted
    assert [(e.action, e.actor, e.role) for e in entries] == [
        ("processor.registered", "staff:officer-7", role),
        ("processor.updated", "staff:officer-7", role),
    ]
    assert created["secret"] not in str([e.details for e in entries])


async def test_registration_failure_paths(
    client: httpx.AsyncClient, staff_headers: Any, receiver: Any
) -> None:
    headers = staff_headers("privacy_officer")
    good = {"code": "hct", "name": "HCT", "nation": "TW", "webhook_url": receiver.url}
    assert (await client.post("/v1/processors", json=good, headers=headers)).status_code == 201

    response = await client.post("/v1/processors", json=good, headers=headers)
    assert response.status_code == 409 and response.json()["code"] == "conflict"
    for bad in (
        {**good, "code": "HCT TW"},
        {**good, "code": "x"},
        {**good, "events": ["personal_data.shared"]},
        {**good, "events": []},
        {**good, "state": "paused"},
        {**good, "secret": "whsec_mine"},
        {key: value for key, value in good.items() if key != "webhook_url"},
    ):
        response = await client.post("/v1/processors", json=bad, headers=headers)
        assert response.status_code == 422, bad
        assert response.json()["code"] == "validation-failed"
    response = await client.post(
        "/v1/processors", json={**good, "code": "ftp", "webhook_url": "ftp://x"}, headers=headers
    )
    assert response.status_code == 422 and response.json()["code"] == "webhook-url-refused"

    for method, path, body in (
        ("GET", "/v1/processors/nope", None),
        ("PATCH", "/v1/processors/nope", {"name": "N"}),
        ("POST", "/v1/processors/nope/rotate-secret", None),
        ("GET", "/v1/processors/nope/deliveries", None),
        ("POST", "/v1/processors/nope/deliveries/replay", None),
        ("GET", f"/v1/deliveries/{SOME_ID}", None),
        ("POST", f"/v1/deliveries/{SOME_ID}/replay", None),
    ):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not-found"

    for body in ({"name": None}, {"webhook_url": None}, {"events": None}, {"colour": "red"}):
        response = await client.patch("/v1/processors/hct", json=body, headers=headers)
        assert response.status_code == 422, body
    response = await client.patch(
        "/v1/processors/hct", json={"webhook_url": "gopher://x"}, headers=headers
    )
    assert response.json()["code"] == "webhook-url-refused"
    response = await client.get("/v1/deliveries/not-a-uuid", headers=headers)
    assert response.status_code == 422
    response = await client.get("/v1/deliveries?cursor=%%%", headers=headers)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://metadata.google.internal/computeMetadata",
        "http://user:pw@93.184.216.34/hook",
        # IPv6 forms that carry a private IPv4 address, each unwrapped and checked as IPv4
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 -> 169.254.169.254
        "http://[64:ff9b::a00:1]/hook",  # NAT64 -> 10.0.0.1
        "http://[2002:7f00:1::]/hook",  # 6to4 -> 127.0.0.1
        "http://[::127.0.0.1]/hook",  # IPv4-compatible
        "http://[::ffff:0:a00:1]/hook",  # IPv4-translated -> 10.0.0.1
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    ],
)
async def test_ssrf_targets_are_refused_at_registration(
    app: Any, client: httpx.AsyncClient, staff_headers: Any, url: str
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"allow_private_webhooks": False})
    response = await client.post(
        "/v1/processors",
        json={"code": "evil", "name": "E", "nation": "KR", "webhook_url": url},
        headers=staff_headers("admin"),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "webhook-url-refused"
    assert url not in response.text
    # Nor by changing the URL of a registered processor.
    app.state.settings = app.state.settings.model_copy(update={"allow_private_webhooks": True})
    registered = await client.post(
        "/v1/processors",
        json={"code": "hct", "name": "H", "nation": "TW", "webhook_url": "http://127.0.0.1:9/"},
        headers=staff_headers("admin"),
    )
    assert registered.status_code == 201, registered.text
    app.state.settings = app.state.settings.model_copy(update={"allow_private_webhooks": False})
    changed = await client.patch(
        "/v1/processors/hct", json={"webhook_url": url}, headers=staff_headers("admin")
    )
    assert changed.status_code == 422 and changed.json()["code"] == "webhook-url-refused"


async def test_prod_requires_https(app: Any, client: httpx.AsyncClient, staff_headers: Any) -> None:
    app.state.settings = app.state.settings.model_copy(update={"env": "prod"})
    response = await client.post(
        "/v1/processors",
        json={"code": "hct", "name": "H", "nation": "TW", "webhook_url": "http://127.0.0.1/x"},
        headers=staff_headers("admin"),
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "The webhook URL must use https."


async def test_deliveries_are_listed_with_filters_and_pages(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    headers = staff_headers("privacy_officer")
    await register(client, staff_headers, code="hct", url=receiver.url)
    await register(client, staff_headers, code="yamato", url=receiver.url)
    ref = uuid.uuid4()
    ids = []
    for n in range(5):
        ids.append(await notify(db, worker, code="hct", request_ref=ref if n < 2 else None))
        clock.advance(timedelta(seconds=1))
    await notify(db, worker, code="yamato", event_type="personal_data.deleted")
    receiver.reply_next(Reply(500))
    await worker.run_once()

    page = (await client.get("/v1/processors/hct/deliveries?limit=2", headers=headers)).json()
    assert [item["id"] for item in page["items"]] == [str(ids[4]), str(ids[3])]
    assert page["items"][0]["webhook_id"] == webhook_id(ids[4])  # type: ignore[arg-type]
    second = (
        await client.get(
            f"/v1/processors/hct/deliveries?limit=2&cursor={page['next_cursor']}", headers=headers
        )
    ).json()
    assert [item["id"] for item in second["items"]] == [str(ids[2]), str(ids[1])]
    by_ref = (
        await client.get(f"/v1/processors/hct/deliveries?request_ref={ref}", headers=headers)
    ).json()
    assert {item["id"] for item in by_ref["items"]} == {str(ids[0]), str(ids[1])}
    pending = (await client.get("/v1/deliveries?status=pending", headers=headers)).json()
    assert len(pending["items"]) == 1 and pending["items"][0]["last_error"]
    deleted = (
        await client.get("/v1/deliveries?event_type=personal_data.deleted", headers=headers)
    ).json()
    assert [item["processor"] for item in deleted["items"]] == ["yamato"]
    unacked = (await client.get("/v1/deliveries?acknowledged=false", headers=headers)).json()
    assert len(unacked["items"]) == 6
    response = await client.get("/v1/deliveries?status=lost", headers=headers)
    assert response.status_code == 422

    failed = pending["items"][0]["id"]
    detail = (await client.get(f"/v1/deliveries/{failed}", headers=headers)).json()
    [attempt] = detail["attempt_log"]
    assert attempt["status_code"] == 500 and attempt["outcome"] == "failed"
    response = await client.post(f"/v1/deliveries/{failed}/replay", headers=headers)
    assert response.status_code == 409  # pending: nothing to replay


async def test_held_notices_cannot_be_replayed_until_the_processor_is_enabled(
    client: httpx.AsyncClient, staff_headers: Any, db: Database, worker: Worker, receiver: Any
) -> None:
    headers = staff_headers("admin")
    await register(client, staff_headers, code="hct", url=receiver.url)
    await client.patch("/v1/processors/hct", json={"state": "disabled"}, headers=headers)
    held = await notify(db, worker, code="hct")
    async with db.transaction() as session:
        await session.execute(
            sa.update(OutboxMessage).where(OutboxMessage.id == held).values(status="dead")  # type: ignore[arg-type]
        )
    response = await client.post(f"/v1/deliveries/{held}/replay", headers=headers)
    assert response.status_code == 409
    response = await client.post("/v1/processors/hct/deliveries/replay", headers=headers)
    assert response.status_code == 409
