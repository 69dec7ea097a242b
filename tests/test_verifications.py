"""One-time codes end to end: a real gateway on 127.0.0.1, the worker, a frozen clock."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.audit import trail
from app.clock import FrozenClock
from app.crypto import Crypto
from app.db import Database
from app.models import OutboxMessage, Verification
from app.observability import JsonFormatter
from app.outbox.worker import Worker
from app.security import TokenService
from app.subjects import identifiers
from tests.support.lifecycle import staff
from tests.support.servers import RecordingServer, Reply

PHONE = "010-4821-7395"
PHONE_E164 = "+821048217395"


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "gateway_token": "gw-secret",
    }


ClientFrom = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def client_from(app: FastAPI) -> ClientFrom:
    """A client whose requests come from the given IP address."""

    @asynccontextmanager
    async def make(ip: str) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http

    return make


async def start(
    client: httpx.AsyncClient, destination: str = PHONE, channel: str = "sms", **extra: Any
) -> httpx.Response:
    return await client.post(
        "/v1/verifications", json={"channel": channel, "destination": destination, **extra}
    )


async def sent_code(worker: Worker, gateway: RecordingServer, path: str = "/sms") -> str:
    await worker.drain()
    code = gateway.requests(path)[-1].json()["variables"]["code"]
    assert isinstance(code, str)
    return code


async def confirm(client: httpx.AsyncClient, verification_id: str, code: str) -> httpx.Response:
    return await client.post(f"/v1/verifications/{verification_id}/confirm", json={"code": code})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


async def test_full_flow_sms_code_to_subject_token(
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    tokens: TokenService,
    clock: FrozenClock,
    db: Database,
    app: FastAPI,
) -> None:
    response = await start(client)
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"verification_id", "expires_at", "masked_destination"}
    assert body["masked_destination"] == "010-****-7395"
    assert body["expires_at"] == "2026-11-26T01:05:00Z"

    code = await sent_code(worker, gateway)
    [received] = gateway.requests("/sms")
    assert received.headers["authorization"] == "Bearer gw-secret"
    message = received.json()
    assert message["channel"] == "sms" and message["to"] == PHONE_E164
    assert message["template"] == "verification_code"
    assert message["variables"] == {"code": code, "minutes": 5}
    assert re.fullmatch(r"[0-9]{6}", code)
    assert f"인증번호는 {code}" in message["body"]

    clock.advance(timedelta(minutes=4))
    confirmed = await confirm(client, body["verification_id"], code)
    assert confirmed.status_code == 200
    assert confirmed.headers["cache-control"] == "no-store"
    answer = confirmed.json()
    assert answer["token_type"] == "bearer" and answer["expires_in"] == 1800

    crypto: Crypto = app.state.crypto
    index = crypto.blind_index("phone", PHONE_E164)
    claims = claims_of(answer["access_token"])
    assert claims["sub"] == index and claims["idk"] == ["phone"] and claims["amr"] == ["otp"]
    assert claims["iss"] == "qx-dsr" and claims["aud"] == "qx-dsr:subject"
    assert claims["exp"] - claims["iat"] == 1800 and len(claims["jti"]) == 32
    assert "48217395" not in json.dumps(claims)
    principal = tokens.verify(answer["access_token"], now=clock.now())
    assert principal.kind == "subject" and principal.subject == index

    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {answer['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {
        "kind": "subject",
        "roles": [],
        "identifier_kinds": ["phone"],
        "amr": ["otp"],
        "expires_at": "2026-11-26T01:34:00Z",
    }

    async with db.sessionmaker() as session:
        remembered = await identifiers.find_identifier(session, blind_index=index)
        assert remembered is not None
        assert identifiers.reveal(crypto, remembered) == PHONE_E164
        audit_actions = (
            await session.execute(sa.text("SELECT action, actor FROM audit_entry"))
        ).all()
    # One convention: the subject as every other entry names them (subject:<blind index>).
    assert [tuple(row) for row in audit_actions] == [("verification.confirmed", f"subject:{index}")]

    again = await confirm(client, body["verification_id"], code)
    assert again.status_code == 410 and again.json()["code"] == "verification-used"


async def test_email_flow_in_english(
    client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    response = await start(client, " Kim.Minji@Example.COM ", channel="email", locale="en")
    assert response.status_code == 202
    assert response.json()["masked_destination"] == "k***@example.com"
    code = await sent_code(worker, gateway, "/email")
    message = gateway.requests("/email")[-1].json()
    assert message["to"] == "kim.minji@example.com"
    assert message["subject"].startswith("[QXPRESS] Your verification code")
    confirmed = await confirm(client, response.json()["verification_id"], code)
    assert confirmed.status_code == 200
    assert claims_of(confirmed.json()["access_token"])["idk"] == ["email"]


@pytest.mark.parametrize(
    "typed",
    ["010-1234-5678", "01012345678", "+82 10 1234 5678", "010 1234 5678", "+82-10-1234-5678"],
)
async def test_korean_number_formats_reach_one_e164_destination(
    client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer, typed: str
) -> None:
    response = await start(client, typed)
    assert response.status_code == 202
    assert response.json()["masked_destination"] == "010-****-5678"
    await worker.drain()
    assert gateway.requests("/sms")[-1].json()["to"] == "+821012345678"


@pytest.mark.parametrize(
    ("channel", "destination", "message"),
    [
        ("sms", "12345", "The phone number is not valid."),
        ("sms", "010-1234-56789012", "The phone number is not valid."),
        ("sms", "someone@example.com", "The phone number is not valid."),
        ("sms", "02-2620-1100", "This number cannot receive codes by SMS."),  # a landline
        ("sms", "+81 90 1234 5678", "This number cannot receive codes by SMS."),  # not in KR
        ("email", "kim.minji@", "The e-mail address is not valid."),
        ("email", "010-1234-5678", "The e-mail address is not valid."),
    ],
)
async def test_invalid_destination_is_422_naming_the_field_never_echoing_it(
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    channel: str,
    destination: str,
    message: str,
) -> None:
    response = await start(client, destination, channel=channel)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation-failed"
    assert problem["errors"] == [
        {"pointer": "/destination", "location": "body", "message": message}
    ]
    assert destination not in response.text
    assert await worker.drain() == 0 and gateway.requests() == []


@pytest.mark.parametrize(
    "body",
    [
        {"channel": "fax", "destination": PHONE},
        {"channel": "sms"},
        {"channel": "sms", "destination": ""},
        {"channel": "sms", "destination": "0" * 400},
        {"channel": "sms", "destination": PHONE, "extra": 1},
    ],
)
async def test_malformed_bodies_are_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/v1/verifications", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "validation-failed"
    assert PHONE not in response.text and "0" * 400 not in response.text


async def test_the_audit_finds_a_subjects_verification_under_their_one_actor_id(
    client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer, db: Database, app: FastAPI
) -> None:
    verification_id = (await start(client)).json()["verification_id"]
    confirmed = await confirm(client, verification_id, await sent_code(worker, gateway))
    token = confirmed.json()["access_token"]
    submitted = await client.post(
        "/v1/requests",
        json={"type": "access"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert submitted.status_code == 201, submitted.text
    index = app.state.crypto.blind_index("phone", PHONE_E164)
    # Rows written before one convention named the subject by the bare index (sealed, kept).
    async with db.transaction() as session:
        for action in ("verification.locked", "request.viewed"):
            await trail.record(
                session, now=app.state.clock.now(), actor=index, role="subject", action=action
            )
    officer = staff(app, "privacy_officer", sub="officer-1")
    page = await client.get("/v1/audit", params={"actor": f"subject:{index}"}, headers=officer)
    assert page.status_code == 200, page.text
    entries = page.json()["items"]
    actions = {entry["action"] for entry in entries}
    assert {"verification.confirmed", "verification.locked", "request.submitted"} <= actions
    assert "request.viewed" not in actions  # a bare id outside the old verification entries
    assert {e["actor"] for e in entries if e["action"] != "verification.locked"} == {
        f"subject:{index}"
    }


async def test_sixth_try_fails_even_with_the_right_code(
    client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer, db: Database
) -> None:
    verification_id = (await start(client)).json()["verification_id"]
    code = await sent_code(worker, gateway)
    for remaining in (4, 3, 2, 1, 0):
        response = await confirm(client, verification_id, wrong(code))
        assert response.status_code == 400
        problem = response.json()
        assert problem["code"] == "verification-code-wrong"
        assert problem["remaining_attempts"] == remaining
        assert code not in response.text
    sixth = await confirm(client, verification_id, code)
    assert sixth.status_code == 410
    assert sixth.json()["code"] == "verification-dead"
    assert code not in sixth.text
    async with db.sessionmaker() as session:
        row = await session.get(Verification, uuid.UUID(verification_id))
        actions = (await session.execute(sa.text("SELECT action FROM audit_entry"))).scalars()
        assert list(actions) == ["verification.locked"]
    assert row is not None and row.status == "dead" and row.wrong_attempts == 5


async def test_a_malformed_code_is_422_and_does_not_count(
    client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    verification_id = (await start(client)).json()["verification_id"]
    code = await sent_code(worker, gateway)
    for malformed in ("12345", "1234567", "abcdef", ""):
        response = await confirm(client, verification_id, malformed)
        assert response.status_code == 422
    response = await confirm(client, verification_id, wrong(code))
    assert response.json()["remaining_attempts"] == 4


async def test_code_expires_after_five_minutes(
    client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer, clock: FrozenClock
) -> None:
    verification_id = (await start(client)).json()["verification_id"]
    code = await sent_code(worker, gateway)
    clock.advance(timedelta(minutes=5))
    response = await confirm(client, verification_id, code)
    assert response.status_code == 410
    assert response.json()["code"] == "verification-expired"
    assert code not in response.text and PHONE not in response.text


async def test_unknown_verification(client: httpx.AsyncClient) -> None:
    response = await confirm(client, str(uuid.uuid4()), "123456")
    assert response.status_code == 404
    assert response.json()["code"] == "verification-unknown"
    response = await confirm(client, "not-a-uuid", "123456")
    assert response.status_code == 422


async def test_each_code_only_opens_its_own_verification(
    client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    first = (await start(client, "010-1111-2222")).json()["verification_id"]
    first_code = await sent_code(worker, gateway)
    second = (await start(client, "010-3333-4444")).json()["verification_id"]
    second_code = await sent_code(worker, gateway)
    if first_code != second_code:
        response = await confirm(client, second, first_code)
        assert response.json()["code"] == "verification-code-wrong"
    assert (await confirm(client, first, first_code)).status_code == 200


async def test_resend_cooldown_then_hourly_limit_per_destination(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    assert (await start(client)).status_code == 202
    clock.advance(timedelta(seconds=20))
    cooled = await start(client, "01048217395")  # the same number, typed differently
    assert cooled.status_code == 429
    assert cooled.headers["retry-after"] == "40"
    assert cooled.json()["code"] == "rate-limited"
    assert PHONE not in cooled.text and "01048217395" not in cooled.text

    clock.advance(timedelta(seconds=40))
    for _ in range(4):  # codes 2..5 of the hour, a minute apart
        assert (await start(client)).status_code == 202
        clock.advance(timedelta(seconds=60))
    # t = 5 min: five codes in the hour, the first sent at t = 0
    limited = await start(client)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == str(3600 - 300)
    # another destination from the same client is not affected
    assert (await start(client, "010-9999-0000")).status_code == 202
    clock.advance(timedelta(seconds=3600 - 300))
    assert (await start(client)).status_code == 202


async def test_limits_come_from_settings(
    client: httpx.AsyncClient, app: FastAPI, clock: FrozenClock
) -> None:
    app.state.settings = app.state.settings.model_copy(
        update={
            "verification_resend_cooldown_seconds": 5,
            "verification_max_per_destination": 2,
            "verification_window_seconds": 600,
        }
    )
    assert (await start(client)).status_code == 202
    clock.advance(timedelta(seconds=5))
    assert (await start(client)).status_code == 202
    clock.advance(timedelta(seconds=5))
    limited = await start(client)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "590"


async def test_client_ip_limit_across_destinations(
    client_from: ClientFrom, clock: FrozenClock, db: Database
) -> None:
    async with client_from("203.0.113.7") as one, client_from("198.51.100.20") as other:
        for n in range(20):
            assert (await start(one, f"010-5555-{n:04d}")).status_code == 202
            clock.advance(timedelta(seconds=10))
        limited = await start(one, "010-5555-0099")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == str(3600 - 200)
        assert (await start(other, "010-5555-0099")).status_code == 202
    async with db.sessionmaker() as session:
        macs = (
            await session.execute(sa.text("SELECT DISTINCT client_mac FROM verification"))
        ).scalars()
        stored = list(macs)
    assert len(stored) == 2
    assert all(re.fullmatch(r"[0-9a-f]{64}", mac) for mac in stored)
    assert not any("203.0.113.7" in mac or "198.51.100.20" in mac for mac in stored)


async def test_ipv6_clients_are_limited_per_64_network(
    client_from: ClientFrom, app: FastAPI, clock: FrozenClock
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"verification_max_per_client_ip": 2})
    async with (
        client_from("2001:db8:1:2::10") as first,
        client_from("2001:db8:1:2:ffff::99") as same_network,
        client_from("2001:db8:1:3::10") as other_network,
    ):
        assert (await start(first, "010-5555-0001")).status_code == 202
        assert (await start(same_network, "010-5555-0002")).status_code == 202
        assert (await start(first, "010-5555-0003")).status_code == 429
        assert (await start(same_network, "010-5555-0004")).status_code == 429
        assert (await start(other_network, "010-5555-0005")).status_code == 202


async def test_concurrent_requests_for_one_destination_send_one_code(
    client_from: ClientFrom, worker: Worker, gateway: RecordingServer
) -> None:
    async with client_from("203.0.113.8") as one, client_from("203.0.113.9") as two:
        responses = await asyncio.gather(start(one), start(two), start(one), start(two))
    assert sorted(response.status_code for response in responses) == [202, 429, 429, 429]
    assert await worker.drain() == 1


async def test_known_and_unknown_destinations_answer_alike(
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    clock: FrozenClock,
    db: Database,
    app: FastAPI,
) -> None:
    # Make one number known: verified before, so it is on record (encrypted).
    verification_id = (await start(client, "010-2000-3000")).json()["verification_id"]
    assert (
        await confirm(client, verification_id, await sent_code(worker, gateway))
    ).status_code == 200
    async with db.sessionmaker() as session:
        index = app.state.crypto.blind_index("phone", "+821020003000")
        assert await identifiers.find_identifier(session, blind_index=index) is not None
    clock.advance(timedelta(minutes=2))

    known = await start(client, "010-2000-3000")
    unknown = await start(client, "010-7000-8000")
    assert known.status_code == unknown.status_code == 202
    assert known.headers.keys() - {"x-request-id"} == unknown.headers.keys() - {"x-request-id"}
    known_body, unknown_body = known.json(), unknown.json()
    assert set(known_body) == set(unknown_body)
    assert known_body["expires_at"] == unknown_body["expires_at"]
    assert re.fullmatch(r"010-\*{4}-\d{4}", known_body["masked_destination"])
    assert re.fullmatch(r"010-\*{4}-\d{4}", unknown_body["masked_destination"])
    assert len(known.content) == len(unknown.content)
    # and both really get a code
    assert await worker.drain() == 2
    assert {r.json()["to"] for r in gateway.requests("/sms")[-2:]} == {
        "+821020003000",
        "+821070008000",
    }

    # Limits answer alike too.
    known_limited = await start(client, "010-2000-3000")
    unknown_limited = await start(client, "010-7000-8000")
    assert known_limited.status_code == unknown_limited.status_code == 429
    strip = {"request_id"}
    assert {k: v for k, v in known_limited.json().items() if k not in strip} == {
        k: v for k, v in unknown_limited.json().items() if k not in strip
    }


async def test_gateway_down_then_up_delivers_the_code_after_retry(
    client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer, clock: FrozenClock
) -> None:
    gateway.reply_next(Reply(503), Reply(502))
    verification_id = (await start(client)).json()["verification_id"]
    assert await worker.run_once() == 1
    clock.advance(timedelta(seconds=10))
    assert await worker.run_once() == 1
    clock.advance(timedelta(seconds=45))
    assert await worker.run_once() == 1
    attempts = gateway.requests("/sms")
    assert len(attempts) == 3
    code = attempts[-1].json()["variables"]["code"]
    assert attempts[0].json() == attempts[-1].json()  # the same message, retried
    assert (await confirm(client, verification_id, code)).status_code == 200


async def test_a_code_the_gateway_never_takes_dies_before_it_is_useless(
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    clock: FrozenClock,
    db: Database,
) -> None:
    gateway.default = Reply(503)
    await start(client)
    for _ in range(6):
        await worker.run_once()
        clock.advance(timedelta(minutes=3))
    assert len(gateway.requests("/sms")) == 4
    async with db.sessionmaker() as session:
        status = (await session.execute(sa.select(OutboxMessage.status))).scalar_one()
    assert status == "dead"


async def test_no_code_or_destination_in_logs_or_stored_in_clear(
    client_from: ClientFrom,
    worker: Worker,
    gateway: RecordingServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    db: Database,
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.reply_next(Reply(500))
    async with client_from("203.0.113.77") as client:
        response = await start(client)
        verification_id = response.json()["verification_id"]
        await worker.run_once()
        await worker.drain()
        code = gateway.requests("/sms")[-1].json()["variables"]["code"]
        await confirm(client, verification_id, wrong(code))
        await confirm(client, verification_id, code)
        email = await start(client, "kim.minji@example.com", channel="email")
        await confirm(client, email.json()["verification_id"], "000000")
        await start(client, "02-2620-1100")
        await start(client, PHONE)  # rate-limited
    await worker.drain()

    formatter = JsonFormatter()
    lines = "\n".join(formatter.format(record) for record in caplog.records)
    assert "verification.started" in lines and "verification.confirmed" in lines
    assert "verification.wrong_code" in lines and "worker.outcome" in lines
    captured = capsys.readouterr()
    secrets_seen = [code, PHONE, PHONE_E164, "01048217395", "48217395", "4821-7395", "kim.minji"]
    secrets_seen += ["26201100", "203.0.113.77"]
    for secret in secrets_seen:
        assert secret not in lines, secret
        assert secret not in captured.out and secret not in captured.err, secret

    async with db.sessionmaker() as session:
        rows = (await session.execute(sa.text("SELECT * FROM verification"))).all()
        outbox_rows = (await session.execute(sa.text("SELECT payload FROM outbox_message"))).all()
    dumped = repr(rows).encode() + b"".join(bytes(row[0] or b"") for row in outbox_rows)
    for secret in (code, "821048217395", "48217395", "kim.minji", "203.0.113.77"):
        assert secret.encode() not in dumped, secret


async def test_old_verifications_are_purged(
    client: httpx.AsyncClient, worker: Worker, clock: FrozenClock, db: Database
) -> None:
    await start(client)
    clock.advance(timedelta(hours=23))
    await start(client, "010-1111-2222")
    clock.advance(timedelta(hours=2))
    await worker.run_periodic()
    async with db.sessionmaker() as session:
        left = (await session.execute(sa.text("SELECT count(*) FROM verification"))).scalar_one()
    assert left == 1
