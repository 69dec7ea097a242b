"""Fulfilment that finds nothing to carry out goes to a refusal an officer decides (issue 11).

A correction whose record reaches no record of the subject, and a suspension whose every
purpose a contract under way needs (PIPA Art. 37(2)4), return to review with a system proposal:
the system proposes, a privacy officer decides (two people), and the subject gets the refusal
notice with a reason they understand. Through HTTP and the real worker on the demo data.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.db import Database
from app.demo.load import DEMO_SUBJECT
from app.outbox.worker import Worker
from tests.support.lifecycle import OFFICER, make_subject, staff
from tests.support.servers import RecordingServer
from tests.test_correction_flow import (  # noqa: F401 - fixtures
    DEMO_PHONE,
    NEW_ADDRESS,
    approve,
    demo,
    rows,
    settings_overrides,
    status,
    usage,
)
from tests.test_privacy_pages import post_form, sign_in_as


async def _returned_then_refused(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    request_id: str,
    ground: str,
) -> dict[str, Any]:
    await approve(app, client, request_id)
    await worker.drain()
    officer = staff(app, *OFFICER, sub="officer-1")
    found = (await client.get(f"/v1/staff/requests/{request_id}", headers=officer)).json()
    assert found["status"] == "in_review"
    assert found["proposal"]["ground"] == ground
    assert found["proposal"]["by"] == "system"
    refused = await client.post(
        f"/v1/staff/requests/{request_id}/refuse",
        json={"ground": ground, "explanation": found["proposal"]["explanation"]},
        headers=officer,
    )
    assert refused.status_code == 200, refused.text
    await worker.drain()
    sent = [r.json() for r in gateway.requests("/sms")]
    decided = [m for m in sent if m["template"] == "request_decided"]
    assert len(decided) == 1
    return decided[0]


@pytest.mark.parametrize("locale", ["ko", "en"])
async def test_a_correction_of_an_unknown_record_is_refused_not_completed(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer, locale: str
) -> None:
    subject = await make_subject(app, DEMO_PHONE)
    created = await client.post(
        "/v1/requests",
        json={
            "type": "correction",
            "locale": locale,
            "corrections": [
                {
                    "item": "address",
                    "new_value": "서울특별시 강서구 공항대로 1",
                    "record_ref": "NOPE0",
                }
            ],
        },
        headers=subject.headers,
    )
    request_id = created.json()["id"]
    message = await _returned_then_refused(
        app, client, worker, gateway, request_id, "record_not_found"
    )
    assert await status(client, subject, request_id) == "refused"
    body = message["body"]
    if locale == "ko":
        assert "기록을 귀하의 개인정보에서 찾을 수 없습니다" in body and "제36조제1항" in body
        assert "운송장 번호" in body
    else:
        assert "We could not find the record you asked us to correct" in body
        assert "tracking number" in body and "Art. 36(1)" in body
    assert "1833-6972" in body and "118" in body
    # Nothing was written anywhere and nothing completed; the restriction is lifted.
    assert not [m for m in gateway.requests("/sms") if m.json()["template"] == "request_completed"]
    assert (await usage(client, app, ["address"]))["allowed"] is True


async def test_a_correction_reaching_some_records_refuses_only_the_rest(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    db: Database,
) -> None:
    subject = await make_subject(app, DEMO_PHONE)
    created = await client.post(
        "/v1/requests",
        json={
            "type": "correction",
            "corrections": [
                {"item": "address", "new_value": NEW_ADDRESS},
                {"item": "name", "new_value": "김정정", "record_ref": "NOPE0"},
            ],
        },
        headers=subject.headers,
    )
    request_id = created.json()["id"]
    await approve(app, client, request_id)
    await worker.drain()
    assert await status(client, subject, request_id) == "partially_completed"
    mine = (await client.get(f"/v1/requests/{request_id}", headers=subject.headers)).json()
    assert [(r["item"], r["ground"], r["stage"]) for r in mine["fulfilment_refusals"]] == [
        ("name", "record_not_found", "fulfilment")
    ]
    found = await rows(
        db,
        "SELECT sender_address, sender_name FROM demo.deliveries WHERE sender_phone = :p",
        p=DEMO_SUBJECT.phone,
    )
    assert found and all(row["sender_address"] == NEW_ADDRESS for row in found)
    assert all(row["sender_name"] == DEMO_SUBJECT.name for row in found)
    [completed] = [
        m.json()["body"]
        for m in gateway.requests("/sms")
        if m.json()["template"] == "request_completed"
    ]
    assert "일부 처리되었습니다" in completed and "찾을 수 없는 경우" in completed
    assert "1833-6972" in completed


async def test_a_suspension_every_purpose_of_which_is_under_way_is_an_officers_refusal(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    db: Database,
) -> None:
    async with db.transaction() as session:
        await session.execute(
            sa.text(
                "UPDATE demo.deliveries SET delivered_at = NULL"
                " WHERE id = (SELECT min(id) FROM demo.deliveries WHERE sender_phone = :p)"
            ),
            {"p": DEMO_SUBJECT.phone},
        )
    subject = await make_subject(app, DEMO_PHONE)
    created = await client.post(
        "/v1/requests",
        json={"type": "suspension", "purposes": ["delivery"]},
        headers=subject.headers,
    )
    request_id = created.json()["id"]
    message = await _returned_then_refused(app, client, worker, gateway, request_id, "pipa_37_2_4")
    assert await status(client, subject, request_id) == "refused"
    assert "계약" in message["body"] and "제37조제2항제4호" in message["body"]
    assert "1833-6972" in message["body"]
    # Nothing was suspended: the parcel under way is still delivered.
    assert (await usage(client, app, ["address"], purpose="delivery"))["allowed"] is True


async def test_the_privacy_center_refuses_a_record_that_is_not_the_subjects_at_intake(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, db: Database
) -> None:
    """Where intake reads the subject's records anyway (the privacy center offers them), an
    unknown record is refused on the form before anything is stored; the API checks it at
    fulfilment (above)."""
    subject = await make_subject(app, DEMO_PHONE)
    [tracking] = await rows(
        db,
        "SELECT tracking_no FROM demo.deliveries WHERE sender_phone = :p ORDER BY id LIMIT 1",
        p=DEMO_SUBJECT.phone,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as browser:
        sign_in_as(browser, subject)
        form = {"item": "address", "new_value": NEW_ADDRESS, "step": "submit"}
        path = "/privacy/requests/new/correction"
        unknown = await post_form(browser, path, {**form, "record_ref": "NOPE0"})
        assert unknown.status_code == 422
        assert "정정할 기록을 다시 선택해 주세요." in unknown.text
        mine = await client.get("/v1/requests", headers=subject.headers)
        assert mine.json()["items"] == []  # nothing stored, nothing held
        assert (await usage(client, app, ["address"]))["allowed"] is True
        known = await post_form(browser, path, {**form, "record_ref": tracking["tracking_no"]})
        assert known.status_code == 303, known.text
    [created] = (await client.get("/v1/requests", headers=subject.headers)).json()["items"]
    assert created["type"] == "correction"
    await approve(app, client, created["id"])
    await worker.drain()
    assert await status(client, subject, created["id"]) == "completed"
    [changed] = await rows(
        db,
        "SELECT sender_address FROM demo.deliveries WHERE tracking_no = :t",
        t=tracking["tracking_no"],
    )
    assert changed["sender_address"] == NEW_ADDRESS
