"""The subject's side: submitting each type, validation, idempotency, duplicates, isolation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.db import Database
from tests.support.lifecycle import (
    AGENT,
    BODIES,
    CORRECTION,
    make_subject,
    new_request,
    staff,
    submit,
)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"auto_approve_access": False}


@pytest.mark.parametrize("request_type", sorted(BODIES))
async def test_each_type_is_received_with_a_due_date(
    app: FastAPI, client: httpx.AsyncClient, request_type: str
) -> None:
    subject = await make_subject(app)
    response = await submit(client, subject, BODIES[request_type])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["type"] == request_type and body["status"] == "received"
    assert body["received_at"] == "2026-11-26T01:00:00Z"
    # Received Thursday 26 Nov, 10:00 KST: due at the end of 6 December KST.
    assert body["due_at"] == "2026-12-06T14:59:59Z"
    assert body["due_at_local"] == "2026-12-06T23:59:59+09:00"
    assert body["days_left"] == 10 and body["overdue"] is False


async def test_correction_values_are_checked_per_item_and_normalised(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    good = {
        "type": "correction",
        "corrections": [
            {"item": "phone", "new_value": "010-2222-3333", "record_ref": "QX123456789KR"},
            {"item": "customs_code", "new_value": "p123456789012"},
            {"item": "email", "new_value": " New.Mail@Example.COM "},
            {"item": "name", "new_value": "홍  길동"},
        ],
        "evidence": [{"document_kind": "id_card", "reference": "doc-store:42"}],
    }
    created = await submit(client, subject, good)
    assert created.status_code == 201, created.text
    detail = await client.get(f"/v1/requests/{created.json()['id']}", headers=subject.headers)
    values = [entry["new_value"] for entry in detail.json()["body"]["corrections"]]
    assert values == ["+821022223333", "P123456789012", "new.mail@example.com", "홍 길동"]


@pytest.mark.parametrize(
    ("entry", "pointer"),
    [
        ({"item": "phone", "new_value": "010-12"}, "/corrections/0/new_value"),
        ({"item": "customs_code", "new_value": "P12345"}, "/corrections/0/new_value"),
        ({"item": "email", "new_value": "not-an-address"}, "/corrections/0/new_value"),
        ({"item": "ip_address", "new_value": "10.0.0.1"}, "/corrections/0/new_value"),
        ({"item": "shoe_size", "new_value": "270"}, "/corrections/0/item"),
        ({"item": "address", "new_value": "강서구 공항대로 1", "record_ref": "has spaces"}, None),
        ({"item": "address", "new_value": "서울"}, "/corrections/0/new_value"),
    ],
)
async def test_bad_corrections_are_422_without_echoing_the_value(
    app: FastAPI,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    entry: dict[str, Any],
    pointer: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    subject = await make_subject(app)
    response = await submit(client, subject, {"type": "correction", "corrections": [entry]})
    assert response.status_code == 422
    assert response.json()["code"] == "validation-failed"
    if pointer:
        assert pointer in [error["pointer"] for error in response.json()["errors"]]
    assert entry["new_value"] not in response.text
    assert entry["new_value"] not in caplog.text


@pytest.mark.parametrize(
    "body",
    [
        {"type": "access", "purposes": ["marketing"]},
        {"type": "correction"},
        {"type": "correction", "corrections": []},
        {"type": "suspension"},
        {"type": "suspension", "purposes": ["world_domination"]},
        {"type": "consent_withdrawal", "purposes": []},
        {"type": "deletion", "categories": ["nope"]},
        {"type": "deletion", "corrections": CORRECTION["corrections"]},
        {"type": "erasure"},
        {
            "type": "correction",
            "corrections": [
                {"item": "name", "new_value": "김철수"},
                {"item": "name", "new_value": "김영희"},
            ],
        },
    ],
)
async def test_bodies_that_do_not_fit_their_type_are_422(
    app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    subject = await make_subject(app)
    response = await submit(client, subject, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_body_is_stored_encrypted(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    subject = await make_subject(app)
    await new_request(client, subject, "correction")
    async with db.sessionmaker() as session:
        raw = (await session.execute(sa.text("SELECT body_encrypted FROM dsr_request"))).scalar()
        dumped = (
            await session.execute(sa.text("SELECT row_to_json(r)::text FROM dsr_request r"))
        ).scalar()
    assert raw is not None and "공항대로".encode() not in raw
    assert "공항대로" not in dumped and "821012345678" not in dumped


async def test_idempotency_key_replays_the_first_answer(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    subject = await make_subject(app)
    first = await submit(client, subject, CORRECTION, **{"Idempotency-Key": "k-1"})
    again = await submit(client, subject, CORRECTION, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await submit(client, subject, BODIES["deletion"], **{"Idempotency-Key": "k-1"})
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency-key-reused"
    async with db.sessionmaker() as session:
        count = (await session.execute(sa.text("SELECT count(*) FROM dsr_request"))).scalar()
    assert count == 1


async def test_concurrent_calls_with_one_key_create_one_request(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    subject = await make_subject(app)
    responses = await asyncio.gather(
        *(submit(client, subject, CORRECTION, **{"Idempotency-Key": "same"}) for _ in range(5))
    )
    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    async with db.sessionmaker() as session:
        count = (await session.execute(sa.text("SELECT count(*) FROM dsr_request"))).scalar()
    assert count == 1


async def test_keys_are_per_subject(app: FastAPI, client: httpx.AsyncClient) -> None:
    one = await make_subject(app)
    two = await make_subject(app, "+821099998888")
    first = await submit(client, one, CORRECTION, **{"Idempotency-Key": "shared"})
    second = await submit(client, two, CORRECTION, **{"Idempotency-Key": "shared"})
    assert first.json()["id"] != second.json()["id"]


async def test_a_second_open_request_of_a_type_is_409_naming_the_open_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    open_id = await new_request(client, subject, "correction")
    duplicate = await submit(client, subject, CORRECTION)
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "duplicate-request"
    assert duplicate.json()["open_request_id"] == open_id
    # Another type is fine; after withdrawal the same type is fine again.
    assert (await submit(client, subject, BODIES["deletion"])).status_code == 201
    withdrawn = await client.post(f"/v1/requests/{open_id}/withdraw", headers=subject.headers)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    assert (await submit(client, subject, CORRECTION)).status_code == 201


async def test_concurrent_duplicates_leave_one_open_request(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    responses = await asyncio.gather(*(submit(client, subject, CORRECTION) for _ in range(4)))
    assert sorted(response.status_code for response in responses) == [201, 409, 409, 409]


async def test_a_subject_sees_only_their_own_requests(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    mine = await make_subject(app)
    theirs = await make_subject(app, "other@example.com", "email")
    my_id = await new_request(client, mine, "correction")
    their_id = await new_request(client, theirs, "deletion")

    listed = await client.get("/v1/requests", headers=mine.headers)
    assert [item["id"] for item in listed.json()["items"]] == [my_id]
    for path in (f"/v1/requests/{their_id}", f"/v1/requests/{their_id}/withdraw"):
        method = client.get if not path.endswith("withdraw") else client.post
        response = await method(path, headers=mine.headers)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not-found"
    objection = await client.post(
        f"/v1/requests/{their_id}/objection", json={"reason": "x"}, headers=mine.headers
    )
    assert objection.status_code == 404
    unknown = await client.get(
        "/v1/requests/00000000-0000-4000-8000-000000000000", headers=mine.headers
    )
    assert unknown.status_code == 404


async def test_subject_endpoints_need_a_subject_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject)
    calls = [
        ("POST", "/v1/requests", CORRECTION),
        ("GET", "/v1/requests", None),
        ("GET", f"/v1/requests/{request_id}", None),
        ("POST", f"/v1/requests/{request_id}/withdraw", None),
        ("POST", f"/v1/requests/{request_id}/objection", {"reason": "x"}),
    ]
    for method, path, body in calls:
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status_code == 401, path
        for roles in (AGENT, ("privacy_officer",), ("admin",), ("service",)):
            response = await client.request(method, path, json=body, headers=staff(app, *roles))
            assert response.status_code == 403, (path, roles)


async def test_an_unknown_verified_identifier_must_verify_again(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from datetime import timedelta

    token = app.state.tokens.issue_subject_token(
        blind_index="f" * 64,
        identifier_kinds=["phone"],
        now=app.state.clock.now(),
        ttl=timedelta(hours=1),
    )
    response = await client.post(
        "/v1/requests", json=CORRECTION, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


async def test_refusal_grounds_are_public_and_name_their_legal_source(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    for headers in ({}, subject.headers, staff(app, *AGENT)):
        response = await client.get("/v1/refusal-grounds", headers=headers)
        assert response.status_code == 200
    grounds = {item["code"]: item for item in response.json()["items"]}
    assert {
        "pipa_35_4_1",
        "pipa_35_4_2",
        "pipa_35_4_3",
        "pipa_36_1_proviso",
        "pipa_37_2_1",
        "pipa_37_2_2",
        "pipa_37_2_4",
        "record_not_found",
        "identity_not_verified",
        "policy_6_1",
        "policy_6_2",
        "policy_6_3",
    } == set(grounds)
    assert grounds["pipa_36_1_proviso"]["applies_to"] == ["deletion"]
    assert grounds["pipa_35_4_2"]["legal_source_ko"] == "개인정보 보호법 제35조제4항제2호"
    assert grounds["pipa_37_2_4"]["legal_source_en"] == "PIPA Art. 37(2) item 4"
