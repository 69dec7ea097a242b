"""Objections (PIPA Art. 38(5)): the window, their own due date, review, reopening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.clock import FrozenClock
from tests.support.lifecycle import AGENT, OFFICER, drive, make_subject, new_request, staff

REASON = {"reason": "거절 사유에 동의하지 않습니다."}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"auto_approve_access": False}


async def refused_request(app: FastAPI, client: httpx.AsyncClient) -> tuple[Any, str]:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    await drive(app, request_id, "refused")  # decided by officer-1
    return subject, request_id


async def test_objection_within_the_window_gets_its_own_due_date(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    subject, request_id = await refused_request(app, client)
    mine = (await client.get(f"/v1/requests/{request_id}", headers=subject.headers)).json()
    assert mine["objection_until"] == "2026-12-26T14:59:59Z"  # 30 days, end of day in Seoul

    clock.set(datetime(2026, 12, 26, 14, 0, tzinfo=UTC))  # the last evening
    response = await client.post(
        f"/v1/requests/{request_id}/objection", json=REASON, headers=subject.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "open" and body["reason"] == REASON["reason"]
    assert body["due_at_local"] == "2027-01-05T23:59:59+09:00"

    again = await client.post(
        f"/v1/requests/{request_id}/objection", json=REASON, headers=subject.headers
    )
    assert again.status_code == 409 and again.json()["code"] == "objection-not-allowed"

    queue = await client.get("/v1/staff/objections?status=open", headers=staff(app, *AGENT))
    assert [row["id"] for row in queue.json()["items"]] == [body["id"]]
    clock.advance(timedelta(days=11))
    late = await client.get("/v1/staff/objections?overdue=true", headers=staff(app, *AGENT))
    assert [row["overdue"] for row in late.json()["items"]] == [True]
    counts = (await client.get("/v1/staff/requests", headers=staff(app, *AGENT))).json()["counts"]
    assert counts["open_objections"] == 1


async def test_the_window_closes(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    subject, request_id = await refused_request(app, client)
    clock.set(datetime(2026, 12, 26, 15, 0, tzinfo=UTC))  # 27 Dec 00:00 in Seoul
    response = await client.post(
        f"/v1/requests/{request_id}/objection", json=REASON, headers=subject.headers
    )
    assert response.status_code == 409
    assert response.json()["objection_until"] == "2026-12-26T14:59:59+00:00"


@pytest.mark.parametrize(
    "status", ["received", "in_review", "in_progress", "completed", "withdrawn"]
)
async def test_nothing_to_object_to(app: FastAPI, client: httpx.AsyncClient, status: str) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    await drive(app, request_id, status)
    response = await client.post(
        f"/v1/requests/{request_id}/objection", json=REASON, headers=subject.headers
    )
    assert response.status_code == 409 and response.json()["code"] == "objection-not-allowed"


async def test_a_partial_completion_can_be_objected_to(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    await drive(app, request_id, "partially_completed")
    response = await client.post(
        f"/v1/requests/{request_id}/objection", json=REASON, headers=subject.headers
    )
    assert response.status_code == 201


async def test_review_is_an_other_officers_and_upheld_reopens_the_request(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject, request_id = await refused_request(app, client)
    created = await client.post(
        f"/v1/requests/{request_id}/objection", json=REASON, headers=subject.headers
    )
    url = f"/v1/staff/objections/{created.json()['id']}/decide"
    upheld = {"outcome": "upheld", "explanation": "신분 확인 서류가 확인되었습니다."}
    assert (await client.post(url, json=upheld, headers=staff(app, *AGENT))).status_code == 403
    own = await client.post(url, json=upheld, headers=staff(app, *OFFICER, sub="officer-1"))
    assert own.status_code == 403 and own.json()["code"] == "four-eyes"
    ok = await client.post(url, json=upheld, headers=staff(app, *OFFICER, sub="officer-2"))
    assert ok.status_code == 200 and ok.json()["status"] == "upheld"
    twice = await client.post(url, json=upheld, headers=staff(app, *OFFICER, sub="officer-2"))
    assert twice.status_code == 409

    mine = (await client.get(f"/v1/requests/{request_id}", headers=subject.headers)).json()
    assert mine["status"] == "in_review" and mine["decision"] is None
    assert mine["due_at"] == ok.json()["due_at"]
    assert mine["objections"][0]["explanation"] == upheld["explanation"]
    # The reopened request is decided afresh.
    approved = await client.post(
        f"/v1/staff/requests/{request_id}/approve", json={}, headers=staff(app, *AGENT)
    )
    assert approved.status_code == 200 and approved.json()["status"] == "in_progress"
    detail = await client.get(f"/v1/staff/requests/{request_id}", headers=staff(app, *OFFICER))
    actions = [event["action"] for event in detail.json()["history"]]
    assert actions.index("objection_decided") < actions.index("reopen") < actions.index("approve")


async def test_upholding_while_the_subject_has_another_open_request_of_the_type_is_a_409(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Reopening would make two open corrections for one subject (the unique index answered
    500, found by the contract fuzz); the officer is told which request is open instead."""
    subject, request_id = await refused_request(app, client)
    created = await client.post(
        f"/v1/requests/{request_id}/objection", json=REASON, headers=subject.headers
    )
    newer = await new_request(client, subject, "correction")  # filed after the refusal
    url = f"/v1/staff/objections/{created.json()['id']}/decide"
    upheld = {"outcome": "upheld", "explanation": "신분 확인 서류가 확인되었습니다."}
    refused = await client.post(url, json=upheld, headers=staff(app, *OFFICER, sub="officer-2"))
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "duplicate-request"
    assert refused.json()["open_request_id"] == newer
    mine = (await client.get(f"/v1/requests/{request_id}", headers=subject.headers)).json()
    assert mine["status"] == "refused" and mine["objections"][0]["status"] == "open"

    dismissed = {"outcome": "dismissed", "explanation": "거절이 맞습니다."}
    ok = await client.post(url, json=dismissed, headers=staff(app, *OFFICER, sub="officer-2"))
    assert ok.status_code == 200  # dismissing reopens nothing

    # Once the newer one is closed, an objection to another refusal can be upheld.
    closed = await client.post(f"/v1/requests/{newer}/withdraw", json={}, headers=subject.headers)
    assert closed.status_code == 200, closed.text
    second, second_id = await refused_request(app, client)
    objection = await client.post(
        f"/v1/requests/{second_id}/objection", json=REASON, headers=second.headers
    )
    later = await new_request(client, second, "correction")
    withdrawn = await client.post(f"/v1/requests/{later}/withdraw", json={}, headers=second.headers)
    assert withdrawn.status_code == 200, withdrawn.text
    reopened = await client.post(
        f"/v1/staff/objections/{objection.json()['id']}/decide",
        json=upheld,
        headers=staff(app, *OFFICER, sub="officer-2"),
    )
    assert reopened.status_code == 200, reopened.text


async def test_unknown_objection_is_404(app: FastAPI, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/staff/objections/00000000-0000-4000-8000-000000000000/decide",
        json={"outcome": "dismissed", "explanation": "x"},
        headers=staff(app, *OFFICER),
    )
    assert response.status_code == 404
