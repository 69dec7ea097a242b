"""Deadlines: 10 days counted in Asia/Seoul, across month ends; days left; overdue; extensions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.clock import FrozenClock
from app.config import Settings
from app.requests import deadlines
from tests.support.lifecycle import BODIES, OFFICER, drive, make_subject, new_request, staff

SEOUL = "Asia/Seoul"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"auto_approve_access": False}


@pytest.mark.parametrize(
    ("received", "due"),
    [
        # 10:00 KST on 26 Nov → end of 6 Dec KST.
        (datetime(2026, 11, 26, 1, 0, tzinfo=UTC), datetime(2026, 12, 6, 14, 59, 59, tzinfo=UTC)),
        # 23:59 KST on 30 Nov (still November in Seoul) → end of 10 Dec.
        (
            datetime(2026, 11, 30, 14, 59, tzinfo=UTC),
            datetime(2026, 12, 10, 14, 59, 59, tzinfo=UTC),
        ),
        # 00:30 KST on 1 Dec (30 Nov in UTC) → end of 11 Dec: the Seoul date counts.
        (
            datetime(2026, 11, 30, 15, 30, tzinfo=UTC),
            datetime(2026, 12, 11, 14, 59, 59, tzinfo=UTC),
        ),
        # Across a year end and into February, and a leap February.
        (datetime(2026, 12, 28, 3, 0, tzinfo=UTC), datetime(2027, 1, 7, 14, 59, 59, tzinfo=UTC)),
        (datetime(2027, 1, 25, 3, 0, tzinfo=UTC), datetime(2027, 2, 4, 14, 59, 59, tzinfo=UTC)),
        (datetime(2028, 2, 25, 3, 0, tzinfo=UTC), datetime(2028, 3, 6, 14, 59, 59, tzinfo=UTC)),
    ],
)
def test_due_dates_count_days_in_seoul(received: datetime, due: datetime) -> None:
    assert deadlines.due_after(received, days=10, tz=SEOUL) == due


async def test_a_request_received_at_month_end_with_a_frozen_clock(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 11, 30, 15, 30, tzinfo=UTC))  # 1 Dec 00:30 in Seoul
    subject = await make_subject(app)
    body = (
        await client.post("/v1/requests", json=BODIES["deletion"], headers=subject.headers)
    ).json()
    assert body["received_at_local"] == "2026-12-01T00:30:00+09:00"
    assert body["due_at_local"] == "2026-12-11T23:59:59+09:00"
    assert body["days_left"] == 10

    clock.set(datetime(2026, 12, 11, 14, 0, tzinfo=UTC))  # 23:00 on the due day
    mine = (await client.get(f"/v1/requests/{body['id']}", headers=subject.headers)).json()
    assert mine["days_left"] == 0 and mine["overdue"] is False
    clock.set(datetime(2026, 12, 11, 15, 0, tzinfo=UTC))  # 00:00 the next day
    mine = (await client.get(f"/v1/requests/{body['id']}", headers=subject.headers)).json()
    assert mine["days_left"] == -1 and mine["overdue"] is True


async def test_days_per_type_come_from_settings(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.settings = app.state.settings.model_copy(
        update={"due_days": {**app.state.settings.due_days, "access": 5}}
    )
    subject = await make_subject(app)
    access = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    assert access.json()["due_at_local"] == "2026-12-01T23:59:59+09:00"
    deletion = await client.post("/v1/requests", json=BODIES["deletion"], headers=subject.headers)
    assert deletion.json()["due_at_local"] == "2026-12-06T23:59:59+09:00"


def test_due_days_are_bounded_by_the_law(keys: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings(env="test", due_days={"access": 11}, **keys)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Settings(env="test", due_days={"erasure": 3}, **keys)  # type: ignore[arg-type]
    assert Settings(env="test", **keys).due_days["suspension"] == 10  # type: ignore[arg-type]


async def test_overdue_filter(app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock) -> None:
    early = await make_subject(app, "+821011110001")
    late = await make_subject(app, "+821011110002")
    done = await make_subject(app, "+821011110003")
    early_id = await new_request(client, early, "deletion")
    done_id = await new_request(client, done, "deletion")
    await drive(app, done_id, "completed")
    clock.advance(timedelta(days=3))
    late_id = await new_request(client, late, "deletion")
    clock.set(datetime(2026, 12, 7, 1, 0, tzinfo=UTC))  # past the first two, not the third

    officer = staff(app, *OFFICER)
    overdue = await client.get("/v1/staff/requests?overdue=true", headers=officer)
    assert [row["id"] for row in overdue.json()["items"]] == [early_id]
    assert overdue.json()["counts"]["overdue"] == 1
    not_overdue = await client.get("/v1/staff/requests?overdue=false", headers=officer)
    assert {row["id"] for row in not_overdue.json()["items"]} == {done_id, late_id}
    before = await client.get(
        "/v1/staff/requests", params={"due_before": "2026-12-08T00:00:00+09:00"}, headers=officer
    )
    assert {row["id"] for row in before.json()["items"]} == {early_id, done_id}


async def test_extension_moves_the_deadline_and_is_checked(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "access")
    url = f"/v1/staff/requests/{request_id}/extend"
    officer = staff(app, *OFFICER)
    reason = "보관 의무 확인에 시간이 필요합니다."
    for new_due in (
        "2026-12-05T12:00:00+09:00",
        "2027-03-01T12:00:00+09:00",
        "2026-12-20T12:00:00",
    ):
        response = await client.post(
            url, json={"reason": reason, "new_due_at": new_due}, headers=officer
        )
        assert response.status_code == 422, new_due
    ok = await client.post(
        url, json={"reason": reason, "new_due_at": "2026-12-20T09:00:00+09:00"}, headers=officer
    )
    assert ok.status_code == 200
    assert ok.json()["due_at_local"] == "2026-12-20T23:59:59+09:00"
    assert ok.json()["extensions"] == 1
    detail = (await client.get(f"/v1/staff/requests/{request_id}", headers=officer)).json()
    assert detail["original_due_at"] == "2026-12-06T14:59:59Z"
    [event] = [e for e in detail["history"] if e["action"] == "extended"]
    assert event["note"] == reason
    assert event["details"]["to_due_at"] == "2026-12-20T14:59:59+00:00"
