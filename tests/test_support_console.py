"""The support console's API: find a caller, own a request, notes, the SLA clock, bulk actions."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.clock import FrozenClock
from app.db import Database
from tests.support.lifecycle import AGENT, OFFICER, drive, make_subject, new_request, staff

ADMIN = ("admin",)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"auto_approve_access": False}


async def intake(
    client: httpx.AsyncClient,
    app: FastAPI,
    *,
    phone: str,
    email: str | None = None,
    kind: str = "deletion",
) -> str:
    identifiers = {"phone": phone} | ({"email": email} if email else {})
    response = await client.post(
        "/v1/staff/requests",
        json={
            "request": {"type": kind}
            if kind != "deletion"
            else {"type": "deletion", "items": ["email"]},
            "identifiers": identifiers,
            "intake_channel": "phone",
            "verification": {"method": "agent", "check": "callback_to_number_on_record"},
        },
        headers=staff(app, *AGENT, sub="agent-1"),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def audit_details(db: Database) -> str:
    async with db.sessionmaker() as session:
        rows = (await session.execute(sa.text("SELECT action, details FROM audit_entry"))).all()
    return json.dumps([[action, details] for action, details in rows], ensure_ascii=False)


async def test_find_a_caller_by_phone_email_or_reference_without_leaving_it_anywhere(
    app: FastAPI, client: httpx.AsyncClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mine = await intake(client, app, phone="010-2468-1357", email="Park.Caller@Example.com")
    other = await intake(client, app, phone="010-1111-2222")
    agent = staff(app, *AGENT)

    async def found(**params: str) -> list[str]:
        response = await client.get("/v1/staff/requests", params=params, headers=agent)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["items"]]

    # The number as people say it, in any format; the address in any case.
    for typed in ("010-2468-1357", "01024681357", "+82 10 2468 1357"):
        assert await found(phone=typed) == [mine]
    assert await found(email="park.caller@example.COM") == [mine]
    assert await found(phone="010-9999-8888") == []
    reference = mine.replace("-", "")[:8]
    assert await found(reference=reference.upper()) == [mine]
    assert await found(reference=reference.lower()) == [mine]
    assert other not in await found(reference=reference)

    bad = await client.get("/v1/staff/requests", params={"phone": "010-12"}, headers=agent)
    assert bad.status_code == 422 and bad.json()["code"] == "validation-failed"
    assert "010-12" not in bad.text
    bad_ref = await client.get("/v1/staff/requests", params={"reference": "XYZ"}, headers=agent)
    assert bad_ref.status_code == 422

    trail = await audit_details(db)
    assert '"search": ["phone"]' in trail and '"search": ["email"]' in trail
    # The service's own log records (the test's httpx client logs its URLs: not ours).
    logged = " ".join(
        f"{record.getMessage()} {record.__dict__}"
        for record in caplog.records
        if not record.name.startswith("httpx")
    )
    assert "dsr.http" in {record.name for record in caplog.records}
    # Whole numbers and addresses (a random request id may hold four digits of them by chance).
    for value in ("24681357", "2468-1357", "2468 1357", "park.caller", "Park.Caller", "010-12"):
        assert value not in trail
        assert value not in logged


async def test_an_agent_takes_an_officer_assigns_and_the_queue_shows_the_owner(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first = await intake(client, app, phone="010-3000-0001")
    second = await intake(client, app, phone="010-3000-0002")
    agent, colleague = staff(app, *AGENT, sub="kim"), staff(app, *AGENT, sub="lee")
    officer = staff(app, *OFFICER, sub="officer-1")

    taken = await client.post(f"/v1/staff/requests/{first}/take", headers=agent)
    assert taken.status_code == 200 and taken.json()["assignee"] == "kim"
    again = await client.post(f"/v1/staff/requests/{first}/take", headers=agent)
    assert again.status_code == 200  # taking what is yours changes nothing
    stolen = await client.post(f"/v1/staff/requests/{first}/take", headers=colleague)
    assert stolen.status_code == 409
    given_back = await client.post(f"/v1/staff/requests/{first}/unassign", headers=colleague)
    assert given_back.status_code == 403
    by_agent = await client.post(
        f"/v1/staff/requests/{second}/assign", json={"assignee": "kim"}, headers=colleague
    )
    assert by_agent.status_code == 403
    assigned = await client.post(
        f"/v1/staff/requests/{second}/assign", json={"assignee": "lee"}, headers=officer
    )
    assert assigned.status_code == 200 and assigned.json()["assignee"] == "lee"
    bad = await client.post(
        f"/v1/staff/requests/{second}/assign", json={"assignee": "a b"}, headers=officer
    )
    assert bad.status_code == 422
    missing = await client.post(f"/v1/staff/requests/{uuid.uuid4()}/take", headers=agent)
    assert missing.status_code == 404

    queue = (await client.get("/v1/staff/requests", headers=agent)).json()["items"]
    assert {row["id"]: row["assignee"] for row in queue} == {first: "kim", second: "lee"}
    mine = await client.get("/v1/staff/requests", params={"assignee": "me"}, headers=agent)
    assert [row["id"] for row in mine.json()["items"]] == [first]
    await client.post(f"/v1/staff/requests/{first}/unassign", headers=agent)
    unowned = await client.get("/v1/staff/requests", params={"assignee": "none"}, headers=agent)
    assert [row["id"] for row in unowned.json()["items"]] == [first]

    detail = (await client.get(f"/v1/staff/requests/{second}", headers=agent)).json()
    assert [event["action"] for event in detail["history"]][-1] == "assigned"
    await drive(app, second, "withdrawn")
    closed = await client.post(f"/v1/staff/requests/{second}/take", headers=agent)
    assert closed.status_code == 409 and closed.json()["code"] == "illegal-transition"


async def test_notes_are_internal_encrypted_and_audited(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    subject = await make_subject(app, "+821055550001")
    request_id = await new_request(client, subject, "correction")
    agent = staff(app, *AGENT, sub="kim")
    text = "고객이 통화 중 주소를 다시 확인해 줌 (secret-note-42)"
    added = await client.post(
        f"/v1/staff/requests/{request_id}/notes", json={"text": text}, headers=agent
    )
    assert added.status_code == 201, added.text
    assert added.json()["author"] == "staff:kim" and added.json()["role"] == "support_agent"
    empty = await client.post(
        f"/v1/staff/requests/{request_id}/notes", json={"text": "  "}, headers=agent
    )
    assert empty.status_code == 422
    # At most 4,000 characters as sent (openapi.yaml), whitespace included.
    too_long = await client.post(
        f"/v1/staff/requests/{request_id}/notes", json={"text": "\n" + "x" * 4000}, headers=agent
    )
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["pointer"] == "/text"
    unknown = await client.post(
        f"/v1/staff/requests/{uuid.uuid4()}/notes", json={"text": "x"}, headers=agent
    )
    assert unknown.status_code == 404

    listed = await client.get(f"/v1/staff/requests/{request_id}/notes", headers=agent)
    assert [note["text"] for note in listed.json()["items"]] == [text]
    detail = (await client.get(f"/v1/staff/requests/{request_id}", headers=agent)).json()
    assert [note["text"] for note in detail["notes"]] == [text]
    theirs = await client.get(f"/v1/requests/{request_id}", headers=subject.headers)
    assert theirs.status_code == 200 and "secret-note-42" not in theirs.text

    async with db.sessionmaker() as session:
        stored = (
            await session.execute(sa.text("SELECT text_encrypted FROM dsr_request_note"))
        ).scalar_one()
    assert b"secret-note-42" not in stored
    trail = await audit_details(db)
    assert "request.note_added" in trail and "request.notes_viewed" in trail
    assert "secret-note-42" not in trail


async def test_bulk_actions_apply_to_each_request_alone(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    ids = [await intake(client, app, phone=f"010-4000-000{n}") for n in range(3)]
    await drive(app, ids[2], "withdrawn")
    agent, officer = staff(app, *AGENT, sub="kim"), staff(app, *OFFICER, sub="boss")
    taken = await client.post(
        "/v1/staff/requests/bulk", json={"action": "take", "ids": ids}, headers=agent
    )
    assert taken.status_code == 200, taken.text
    assert [(row["ok"], row["code"]) for row in taken.json()["items"]] == [
        (True, None),
        (True, None),
        (False, "illegal-transition"),
    ]
    refused = await client.post(
        "/v1/staff/requests/bulk", json={"action": "withdraw_spam", "ids": ids[:1]}, headers=agent
    )
    assert refused.status_code == 403
    no_one = await client.post(
        "/v1/staff/requests/bulk", json={"action": "assign", "ids": ids[:1]}, headers=officer
    )
    assert no_one.status_code == 422
    too_many = await client.post(
        "/v1/staff/requests/bulk",
        json={"action": "take", "ids": [str(uuid.uuid4()) for _ in range(101)]},
        headers=agent,
    )
    assert too_many.status_code == 422
    assigned = await client.post(
        "/v1/staff/requests/bulk",
        json={"action": "assign", "ids": ids[:2], "assignee": "lee"},
        headers=officer,
    )
    assert [row["assignee"] for row in assigned.json()["items"]] == ["lee", "lee"]
    spam = await client.post(
        "/v1/staff/requests/bulk",
        json={"action": "withdraw_spam", "ids": [ids[0], str(uuid.uuid4())]},
        headers=officer,
    )
    assert [(row["ok"], row["status"], row["code"]) for row in spam.json()["items"]] == [
        (True, "withdrawn", None),
        (False, None, "not-found"),
    ]
    async with db.sessionmaker() as session:
        actions = (
            await session.execute(
                sa.text(
                    "SELECT target_id, action FROM audit_entry WHERE action IN "
                    "('request.taken', 'request.assigned', 'request.marked_spam') ORDER BY id"
                )
            )
        ).all()
    assert [tuple(row) for row in actions] == [
        (ids[0], "request.taken"),
        (ids[1], "request.taken"),
        (ids[0], "request.assigned"),
        (ids[1], "request.assigned"),
        (ids[0], "request.marked_spam"),
    ]


async def test_the_sla_clock_and_the_queue_due_within(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    # Received Thu 26 Nov 10:00 KST, due end of 6 Dec; one received 8 days earlier is due
    # end of 28 Nov; one 11 days earlier was due end of 25 Nov (overdue now).
    start = clock.now()
    clock.set(start - timedelta(days=11))
    late = await intake(client, app, phone="010-5000-0001")
    clock.set(start - timedelta(days=8))
    soon = await intake(client, app, phone="010-5000-0002")
    clock.set(start - timedelta(days=10))
    today = await intake(client, app, phone="010-5000-0003", kind="access")
    clock.set(start)
    fresh = await intake(client, app, phone="010-5000-0004")
    agent, officer = staff(app, *AGENT, sub="kim"), staff(app, *OFFICER, sub="boss")
    await client.post(f"/v1/staff/requests/{soon}/take", headers=agent)
    await client.post(f"/v1/staff/requests/{today}/review", headers=agent)
    extended = await client.post(
        f"/v1/staff/requests/{today}/extend",
        json={"reason": "자료 수집 중", "new_due_at": "2026-11-30T00:00:00+09:00"},
        headers=officer,
    )
    assert extended.status_code == 200, extended.text

    overview = (await client.get("/v1/staff/sla", headers=agent)).json()
    assert overview["counts"] == {
        "overdue": 1,
        "due_today": 0,
        "due_soon": 1,
        "postponed": 1,
        "awaiting_acknowledgement": 0,
    }
    assert [row["id"] for row in overview["overdue"]] == [late]
    assert [row["id"] for row in overview["due_soon"]] == [soon]
    wider = (await client.get("/v1/staff/sla?within_days=4", headers=agent)).json()
    assert [row["id"] for row in wider["due_soon"]] == [soon, today]
    mine = (await client.get("/v1/staff/sla?mine=true", headers=agent)).json()
    assert mine["counts"]["due_soon"] == 1 and mine["counts"]["overdue"] == 0
    assert (await client.get("/v1/staff/sla?within_days=11", headers=agent)).status_code == 422

    async def queue(**params: str) -> list[str]:
        response = await client.get("/v1/staff/requests", params=params, headers=agent)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["items"]]

    assert await queue(due_within="2d") == [soon]
    assert await queue(due_within="10d") == [soon, today, fresh]
    assert await queue(sort="-due_at") == [fresh, today, soon, late]
    page = (await client.get("/v1/staff/requests?sort=-due_at&limit=2", headers=agent)).json()
    rest = await queue(sort="-due_at", cursor=page["next_cursor"])
    assert [row["id"] for row in page["items"]] + rest == [fresh, today, soon, late]
    assert (await client.get("/v1/staff/requests?due_within=2w", headers=agent)).status_code == 422
