"""One person, several identifiers: a verified subject adds a second by verifying it too.

``POST /v1/verifications`` with the subject token as bearer; on confirmation the new token
carries both identifiers, and every request of that subject covers records keyed by either.
The no-enumeration answer and the rate limits are the same; a report covering two identifiers
opens only for a token that proved both. Through HTTP and the real worker on the demo data.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI

from app.clock import FrozenClock
from app.demo.load import DEMO_SUBJECT
from app.outbox.worker import Worker
from tests.support.lifecycle import AGENT, staff
from tests.support.servers import RecordingServer
from tests.test_access_flow import demo_loaded, settings_overrides  # noqa: F401 - fixtures


async def verify_identifier(
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    channel: str,
    destination: str,
    bearer: str | None = None,
) -> tuple[httpx.Response, str]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    started = await client.post(
        "/v1/verifications",
        json={"channel": channel, "destination": destination},
        headers=headers,
    )
    assert started.status_code == 202, started.text
    await worker.drain()
    path = "/sms" if channel == "sms" else "/email"
    code = gateway.requests(path)[-1].json()["variables"]["code"]
    confirmed = await client.post(
        f"/v1/verifications/{started.json()['verification_id']}/confirm", json={"code": code}
    )
    assert confirmed.status_code == 200, confirmed.text
    return started, confirmed.json()["access_token"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _collections(client: httpx.AsyncClient, worker: Worker, token: str) -> set[str]:
    created = await client.post("/v1/requests", json={"type": "access"}, headers=_bearer(token))
    assert created.status_code == 201, created.text
    await worker.drain()
    report = await client.get(f"/v1/requests/{created.json()['id']}/report", headers=_bearer(token))
    assert report.status_code == 200, report.text
    return {item["collection"] for item in report.json()["items"]}


async def test_a_subject_adds_an_email_and_requests_cover_both(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    _, phone_token = await verify_identifier(client, worker, gateway, "sms", DEMO_SUBJECT.phone)
    phone_only = await _collections(client, worker, phone_token)
    assert "access_logs" not in phone_only  # keyed by the e-mail address only

    plain, _ = await verify_identifier(client, worker, gateway, "email", "someone.else@example.com")
    linked, both_token = await verify_identifier(
        client, worker, gateway, "email", DEMO_SUBJECT.email, bearer=phone_token
    )
    # No enumeration: adding an identifier answers as a plain verification does.
    assert set(linked.json()) == set(plain.json())
    me = (await client.get("/v1/me", headers=_bearer(both_token))).json()
    assert sorted(me["identifier_kinds"]) == ["email", "phone"]

    # The phone token's access request is still listed (and completed) for the new token...
    listed = (await client.get("/v1/requests", headers=_bearer(both_token))).json()["items"]
    assert len(listed) == 1
    # ...and a new request covers records keyed by either identifier.
    withdraw = await client.post(
        f"/v1/requests/{listed[0]['id']}/withdraw", headers=_bearer(both_token)
    )
    assert withdraw.status_code == 409  # found (already completed), not 404
    assert await _collections(client, worker, both_token) == phone_only | {"access_logs"}


async def test_a_two_identifier_report_needs_both_and_tokens_stay_apart(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    clock: FrozenClock,
) -> None:
    _, phone_token = await verify_identifier(client, worker, gateway, "sms", DEMO_SUBJECT.phone)
    _, both_token = await verify_identifier(
        client, worker, gateway, "email", DEMO_SUBJECT.email, bearer=phone_token
    )
    created = await client.post(
        "/v1/requests", json={"type": "access"}, headers=_bearer(both_token)
    )
    request_id = created.json()["id"]
    await worker.drain()
    # A token holding only the e-mail (or only the phone) sees neither the request nor its
    # report: the request covers both identifiers, and only a token proving both opens it.
    clock.advance(timedelta(minutes=2))  # past the per-destination cooldown
    _, email_token = await verify_identifier(client, worker, gateway, "email", DEMO_SUBJECT.email)
    for token in (email_token, phone_token):
        seen = await client.get(f"/v1/requests/{request_id}", headers=_bearer(token))
        assert seen.status_code == 404
        report = await client.get(f"/v1/requests/{request_id}/report", headers=_bearer(token))
        assert report.status_code == 404
        objection = await client.post(
            f"/v1/requests/{request_id}/objection", json={"reason": "x"}, headers=_bearer(token)
        )
        assert objection.status_code == 404
    assert (
        await client.get(f"/v1/requests/{request_id}", headers=_bearer(both_token))
    ).status_code == 200
    # Another person's token sees nothing of it.
    _, stranger = await verify_identifier(client, worker, gateway, "sms", "010-4821-7395")
    other = await client.get(f"/v1/requests/{request_id}", headers=_bearer(stranger))
    assert other.status_code == 404
    assert (await client.get("/v1/requests", headers=_bearer(stranger))).json()["items"] == []


async def test_without_a_valid_subject_token_it_is_a_plain_verification(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    _, phone_token = await verify_identifier(client, worker, gateway, "sms", DEMO_SUBJECT.phone)
    # An expired or broken token (someone verifying again) and a staff token link nothing.
    for bearer, destination in (
        ("not.a.token", "a@example.com"),
        (staff(app, *AGENT)["Authorization"].removeprefix("Bearer "), "b@example.com"),
    ):
        _, token = await verify_identifier(
            client, worker, gateway, "email", destination, bearer=bearer
        )
        me = (await client.get("/v1/me", headers=_bearer(token))).json()
        assert me["identifier_kinds"] == ["email"]
    # A second phone is a plain verification too: a request reads one phone and one e-mail.
    _, other_phone = await verify_identifier(
        client, worker, gateway, "sms", "010-4821-7395", bearer=phone_token
    )
    assert (await client.get("/v1/me", headers=_bearer(other_phone))).json()[
        "identifier_kinds"
    ] == ["phone"]
    assert (await client.get("/v1/requests", headers=_bearer(other_phone))).json()["items"] == []
    # The per-destination cooldown applies to a linked verification as to any other.
    body = {"channel": "email", "destination": DEMO_SUBJECT.email}
    first = await client.post("/v1/verifications", json=body, headers=_bearer(phone_token))
    assert first.status_code == 202
    again = await client.post("/v1/verifications", json=body, headers=_bearer(phone_token))
    assert again.status_code == 429 and "retry-after" in again.headers
    assert again.headers["content-type"] == "application/problem+json"
